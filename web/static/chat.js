/* The shopper's chat page: talks to the public HTTP API (API.md) through fetch().
 *
 * Safety rule for this file: shopper and catalog text only ever reaches the page through
 * textContent / createElement, never through innerHTML or attribute-built markup.
 */
(function () {
  "use strict";

  var STORAGE_KEY = "personal-shopper:conversation";
  var BUSY_MESSAGE = "The assistant is busy right now \u2014 please try again in a moment.";
  var OFFLINE_MESSAGE = "I couldn't reach the assistant. Check your connection and try again.";
  var TIMEOUT_MESSAGE = "The assistant took too long to answer. Please try again.";
  var EXPIRED_MESSAGE =
    "This conversation has ended. Type what you're looking for to start a new one.";
  var RESTARTED_MESSAGE = "That conversation had ended, so I've started a new one.";
  var WELCOME =
    "Hi! Tell me what you're looking for \u2014 for example \u201crunning shoes for my " +
    "husband\u201d or \u201ca navy kurta under 1500\u201d.";
  var TIMEOUT_MS = 60000;

  var FEEDBACK = [
    { kind: "like", label: "Like" },
    { kind: "not_interested", label: "Not interested" },
    { kind: "already_own", label: "Already own" },
  ];
  var ACTIONS = [
    { action: "more", label: "More" },
    { action: "cheaper", label: "Cheaper" },
    { action: "start_over", label: "Start over" },
  ];

  var apiRoot = "/api/v1";
  var chat, log, form, input, sendButton, statusLine;
  var conversation = null; // {id, token}
  var busy = false;
  var turnSeq = 0;
  var picksShown = false;

  /* ---------- small DOM helpers (text only, never markup) ---------- */

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function button(label, className, onClick) {
    var node = el("button", className, label);
    node.type = "button";
    node.addEventListener("click", onClick);
    return node;
  }

  function scrollToEntry(entry) {
    var smooth = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    entry.scrollIntoView({ block: "start", behavior: smooth ? "smooth" : "auto" });
  }

  /* ---------- storage ---------- */

  function loadSaved() {
    try {
      var raw = window.sessionStorage.getItem(STORAGE_KEY);
      if (!raw) return null;
      var saved = JSON.parse(raw);
      if (saved && typeof saved.id === "string" && typeof saved.token === "string") return saved;
    } catch (err) {
      /* storage blocked or corrupt: start afresh */
    }
    return null;
  }

  function save(conv) {
    try {
      window.sessionStorage.setItem(STORAGE_KEY, JSON.stringify(conv));
    } catch (err) {
      /* storage blocked: the conversation simply won't survive a reload */
    }
  }

  function forget() {
    conversation = null;
    try {
      window.sessionStorage.removeItem(STORAGE_KEY);
    } catch (err) {
      /* nothing to do */
    }
  }

  /* ---------- the API ---------- */

  function ApiError(status, message, problem) {
    this.status = status;
    this.message = message;
    this.problem = problem || null;
  }

  /* True when the conversation itself is gone: bad token, unknown or finished conversation. */
  function conversationGone(err) {
    if (!(err instanceof ApiError)) return false;
    var title = err.problem && err.problem.title;
    return err.status === 401 || err.status === 403 ||
      (err.status === 404 && title === "Conversation not found") ||
      (err.status === 409 && title === "Conversation closed");
  }

  function problemMessage(response, data) {
    var status = response.status;
    if ((status === 503 || status === 429) &&
        (response.headers.has("Retry-After") || !data || !data.detail)) {
      return BUSY_MESSAGE;
    }
    if (data && typeof data.detail === "string" && data.detail) return data.detail;
    if (data && typeof data.title === "string" && data.title) return data.title;
    return "Something went wrong (HTTP " + status + "). Please try again.";
  }

  function api(method, path, body, token) {
    var headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token) headers.Authorization = "Bearer " + token;
    var controller = typeof AbortController === "function" ? new AbortController() : null;
    var timer = controller ? window.setTimeout(function () { controller.abort(); }, TIMEOUT_MS) : 0;
    return fetch(apiRoot + path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      signal: controller ? controller.signal : undefined,
    }).then(
      function (response) {
        return response.text().then(function (text) {
          window.clearTimeout(timer);
          var data = null;
          try {
            data = text ? JSON.parse(text) : null;
          } catch (err) {
            data = null;
          }
          if (!response.ok) {
            throw new ApiError(response.status, problemMessage(response, data), data);
          }
          if (!data || typeof data !== "object") {
            throw new ApiError(response.status, "The assistant sent an answer I couldn't read. Please try again.");
          }
          return data;
        });
      },
      function (err) {
        window.clearTimeout(timer);
        var aborted = err && err.name === "AbortError";
        throw new ApiError(0, aborted ? TIMEOUT_MESSAGE : OFFLINE_MESSAGE);
      }
    );
  }

  /* ---------- rendering ---------- */

  function addEntry(kind, text) {
    var item = el("li", "entry entry--" + kind);
    item.appendChild(el("p", "bubble", text));
    log.appendChild(item);
    return item;
  }

  function showError(message) {
    var item = addEntry("error", message);
    scrollToEntry(item);
    return item;
  }

  function formatPrice(price, currency) {
    if (typeof price !== "number" || !isFinite(price)) return null;
    if (currency) {
      try {
        return new Intl.NumberFormat(undefined, { style: "currency", currency: currency }).format(price);
      } catch (err) {
        return currency + " " + price;
      }
    }
    return new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 }).format(price);
  }

  function attributeSummary(attributes) {
    if (!attributes || typeof attributes !== "object") return "";
    var seen = {};
    var values = [];
    Object.keys(attributes).forEach(function (key) {
      var value = attributes[key];
      if (value === null || value === undefined || value === "" || typeof value === "object") return;
      var text = String(value);
      if (seen[text.toLowerCase()]) return;
      seen[text.toLowerCase()] = true;
      values.push(text);
    });
    return values.join(" \u00b7 ");
  }

  function renderQuestion(question, turnId, message) {
    var group = el("div", "question");
    var promptId = turnId + "-prompt";
    group.setAttribute("role", "group");
    group.setAttribute("aria-labelledby", promptId);
    var promptText = question.prompt || "Choose one";
    var said = promptText && message && message.indexOf(promptText) !== -1;
    var prompt = el("p", said ? "question-prompt visually-hidden" : "question-prompt", promptText);
    prompt.id = promptId;
    group.appendChild(prompt);

    var chips = el("div", "chips");
    (question.options || []).forEach(function (option) {
      var label = option.label || String(option.value);
      var text = typeof option.count === "number" ? label + " \u00b7 " + option.count : label;
      chips.appendChild(button(text, "chip", function () {
        send({ answer: { attribute: question.attribute, value: option.value } }, label);
      }));
    });
    chips.appendChild(button("No preference", "chip chip--skip", function () {
      send({ answer: { attribute: question.attribute, value: null } }, "No preference");
    }));
    group.appendChild(chips);
    return group;
  }

  function renderPick(pick, cardId) {
    var card = el("li", "pick");
    card.dataset.productId = String(pick.product_id);
    var titleId = cardId + "-title";
    var title = el("h3", "pick-title", pick.title || "Untitled product");
    title.id = titleId;
    card.appendChild(title);

    var price = formatPrice(pick.price, pick.currency);
    if (price) card.appendChild(el("p", "pick-price", price));

    var summary = attributeSummary(pick.attributes);
    if (summary) card.appendChild(el("p", "pick-attributes", summary));

    var reasons = Array.isArray(pick.reasons) ? pick.reasons : [];
    if (reasons.length) {
      var list = el("ul", "pick-reasons");
      list.setAttribute("aria-label", "Why this pick");
      reasons.forEach(function (reason) { list.appendChild(el("li", null, reason)); });
      card.appendChild(list);
    }

    var actions = el("div", "pick-feedback");
    FEEDBACK.forEach(function (f) {
      var b = button(f.label, "feedback feedback--" + f.kind, function () {
        send({ feedback: { product_id: pick.product_id, kind: f.kind } },
             f.label + ": " + (pick.title || "this one"), function () {
          b.setAttribute("aria-pressed", "true");
        });
      });
      b.setAttribute("aria-describedby", titleId);
      actions.appendChild(b);
    });
    card.appendChild(actions);
    return card;
  }

  function renderActions() {
    var bar = el("div", "actions");
    ACTIONS.forEach(function (a) {
      bar.appendChild(button(a.label, "action action--" + a.action, function () {
        send({ action: a.action }, a.label);
      }));
    });
    return bar;
  }

  /* The previous turn's chips and action buttons no longer apply once a new turn arrives. */
  function retireCurrentTurn() {
    var current = log.querySelectorAll(".turn.is-current");
    Array.prototype.forEach.call(current, function (turn) {
      turn.classList.remove("is-current");
      Array.prototype.forEach.call(turn.querySelectorAll(".chips, .actions"), function (node) {
        node.parentNode.removeChild(node);
      });
    });
  }

  function renderTurn(turn) {
    retireCurrentTurn();
    turnSeq += 1;
    var turnId = "turn-" + turnSeq;
    var item = el("li", "entry entry--assistant turn is-current");
    item.id = turnId;
    if (turn.state) item.dataset.state = String(turn.state);

    item.appendChild(el("p", "bubble", turn.message || "\u2026"));
    if (turn.question) item.appendChild(renderQuestion(turn.question, turnId, turn.message));

    var picks = Array.isArray(turn.picks) ? turn.picks : [];
    if (picks.length) {
      picksShown = true;
      var heading = el("h2", "visually-hidden", picks.length === 1 ? "1 pick" : picks.length + " picks");
      item.appendChild(heading);
      var list = el("ol", "picks");
      picks.forEach(function (pick, i) { list.appendChild(renderPick(pick, turnId + "-pick-" + i)); });
      item.appendChild(list);
    }
    if (picks.length || (picksShown && !turn.question)) item.appendChild(renderActions());

    log.appendChild(item);
    return item;
  }

  /* What the shopper sent for a kept turn (its `request`), in words, or null if nothing.
   * `previous` is the Turn before it, for option labels; `titles` maps product ids to titles. */
  function shopperWords(turn, previous, titles) {
    var said = turn.request;
    if (typeof said === "string") return said;
    if (!said || typeof said !== "object") return null;
    if (typeof said.text === "string") return said.text;
    if (said.answer && typeof said.answer === "object") {
      var value = said.answer.value;
      if (value === null || value === undefined) return "No preference";
      var options = (previous && previous.question && previous.question.options) || [];
      var option = options.filter(function (o) { return o.value === value; })[0];
      return option && option.label ? String(option.label) : String(value);
    }
    if (typeof said.action === "string") {
      var match = ACTIONS.filter(function (a) { return a.action === said.action; })[0];
      return match ? match.label : said.action;
    }
    if (said.feedback && typeof said.feedback === "object") {
      var fb = FEEDBACK.filter(function (f) { return f.kind === said.feedback.kind; })[0];
      var title = titles[String(said.feedback.product_id)] || "this one";
      return (fb ? fb.label : String(said.feedback.kind)) + ": " + title;
    }
    return null;
  }

  /* ---------- sending ---------- */

  function setBusy(on) {
    busy = on;
    sendButton.disabled = on;
    chat.setAttribute("aria-busy", on ? "true" : "false");
    statusLine.hidden = !on;
  }

  function focusInput() {
    input.focus({ preventScroll: true });
  }

  function startConversation(text) {
    return api("POST", "/conversations", { channel: "web", text: text }).then(function (turn) {
      conversation = { id: String(turn.conversation_id), token: String(turn.token) };
      save(conversation);
      return turn;
    });
  }

  /* Send one request body; `said` is what the shopper's bubble shows. */
  function send(body, said, onSuccess) {
    if (busy) return Promise.resolve();
    setBusy(true);
    var mine = addEntry("shopper", said);
    mine.classList.add("is-pending");
    scrollToEntry(mine);

    var request;
    if (conversation) {
      request = api("POST", "/conversations/" + encodeURIComponent(conversation.id) + "/turns",
                    body, conversation.token).catch(function (err) {
        if (!conversationGone(err)) throw err;
        forget();
        if (typeof body.text !== "string") throw new ApiError(err.status, EXPIRED_MESSAGE);
        log.insertBefore(el("li", "entry entry--notice", RESTARTED_MESSAGE), mine);
        picksShown = false;
        return startConversation(body.text);
      });
    } else if (typeof body.text === "string") {
      request = startConversation(body.text);
    } else {
      request = Promise.reject(new ApiError(0, EXPIRED_MESSAGE));
    }

    return request.then(
      function (turn) {
        mine.classList.remove("is-pending");
        if (typeof body.text === "string" && input.value === body.text) input.value = "";
        if (onSuccess) onSuccess();
        if (body.action === "start_over") picksShown = false;
        var item = renderTurn(turn);
        setBusy(false);
        scrollToEntry(mine.nextSibling === item ? mine : item);
        focusInput();
      },
      function (err) {
        mine.parentNode.removeChild(mine);
        var message = err instanceof ApiError ? err.message : OFFLINE_MESSAGE;
        if (typeof body.text === "string" && !input.value) input.value = body.text;
        showError(message);
        setBusy(false);
        focusInput();
      }
    );
  }

  function onSubmit(event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text || busy) {
      focusInput();
      return;
    }
    send({ text: text }, text);
  }

  /* ---------- start-up ---------- */

  function restore(saved) {
    setBusy(true);
    return api("GET", "/conversations/" + encodeURIComponent(saved.id), undefined, saved.token).then(
      function (data) {
        conversation = saved;
        var previous = null;
        var titles = {};
        (Array.isArray(data.turns) ? data.turns : []).forEach(function (turn) {
          var words = shopperWords(turn, previous, titles);
          if (words) addEntry("shopper", words);
          if (turn.request && turn.request.action === "start_over") picksShown = false;
          renderTurn(turn);
          (Array.isArray(turn.picks) ? turn.picks : []).forEach(function (pick) {
            titles[String(pick.product_id)] = pick.title;
          });
          previous = turn;
        });
        setBusy(false);
        var last = log.lastElementChild;
        if (last) last.scrollIntoView({ block: "start" });
      },
      function (err) {
        setBusy(false);
        if (conversationGone(err)) {
          forget();
        } else {
          conversation = saved;
          showError(err.message);
        }
      }
    );
  }

  function start() {
    var app = document.getElementById("app");
    apiRoot = (app && app.dataset.apiRoot) || apiRoot;
    chat = document.getElementById("chat");
    log = document.getElementById("log");
    form = document.getElementById("composer");
    input = document.getElementById("message");
    sendButton = document.getElementById("send");
    statusLine = document.getElementById("status");

    form.addEventListener("submit", onSubmit);
    addEntry("assistant", WELCOME).classList.add("entry--welcome");

    var saved = loadSaved();
    var ready = saved ? restore(saved) : Promise.resolve();
    ready.then(function () {
      document.documentElement.dataset.chatReady = "true";
      focusInput();
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
