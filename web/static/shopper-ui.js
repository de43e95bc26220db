/* Shared pieces of every front door (chat page, widget, kiosk, console): the API client and
 * the rendering of questions, picks and actions. Exposes window.ShopperUI.
 *
 * Safety rule: shopper and catalog text only ever reaches the page through textContent /
 * createElement, never through innerHTML or attribute-built markup.
 */
(function (global) {
  "use strict";

  var UI = {};

  UI.BUSY_MESSAGE = "The assistant is busy right now \u2014 please try again in a moment.";
  UI.OFFLINE_MESSAGE = "I couldn't reach the assistant. Check your connection and try again.";
  UI.TIMEOUT_MESSAGE = "The assistant took too long to answer. Please try again.";

  UI.FEEDBACK = [
    { kind: "like", label: "Like" },
    { kind: "not_interested", label: "Not interested" },
    { kind: "already_own", label: "Already own" },
  ];
  UI.ACTIONS = [
    { action: "more", label: "More" },
    { action: "cheaper", label: "Cheaper" },
    { action: "start_over", label: "Start over" },
  ];

  /* ---------- small DOM helpers (text only, never markup) ---------- */

  UI.el = function (tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };

  UI.button = function (label, className, onClick) {
    var node = UI.el("button", className, label);
    node.type = "button";
    node.addEventListener("click", onClick);
    return node;
  };

  /* ---------- the API ---------- */

  function ApiError(status, message, problem) {
    this.status = status;
    this.message = message;
    this.problem = problem || null;
  }
  UI.ApiError = ApiError;

  /* True when the conversation itself is gone: bad token, unknown or finished conversation. */
  UI.conversationGone = function (err) {
    if (!(err instanceof ApiError)) return false;
    var title = err.problem && err.problem.title;
    return err.status === 401 || err.status === 403 ||
      (err.status === 404 && title === "Conversation not found") ||
      (err.status === 409 && title === "Conversation closed");
  };

  UI.problemMessage = function (response, data) {
    var status = response.status;
    if ((status === 503 || status === 429) &&
        (response.headers.has("Retry-After") || !data || !data.detail)) {
      var wait = parseInt(response.headers.get("Retry-After") || "", 10);
      if (status === 429 && wait > 0) {
        return "Too many requests just now \u2014 please try again in " +
          (wait >= 60 ? Math.ceil(wait / 60) + " minute" + (wait >= 120 ? "s" : "") :
           wait + " seconds") + ".";
      }
      return UI.BUSY_MESSAGE;
    }
    if (data && typeof data.detail === "string" && data.detail) return data.detail;
    if (data && typeof data.title === "string" && data.title) return data.title;
    return "Something went wrong (HTTP " + status + "). Please try again.";
  };

  /* options: {root, timeoutMs, headers: function () -> extra headers}.
   * Returns api(method, path, body, token) -> Promise of the JSON body (or null for 204). */
  UI.createApi = function (options) {
    return function api(method, path, body, token) {
      var headers = { Accept: "application/json" };
      var extra = options.headers ? options.headers() : null;
      if (extra) Object.keys(extra).forEach(function (k) { headers[k] = extra[k]; });
      if (body !== undefined) headers["Content-Type"] = "application/json";
      if (token) headers.Authorization = "Bearer " + token;
      var controller = typeof AbortController === "function" ? new AbortController() : null;
      var timer = controller ?
        global.setTimeout(function () { controller.abort(); }, options.timeoutMs || 60000) : 0;
      var root = typeof options.root === "function" ? options.root() : options.root;
      return fetch(root + path, {
        method: method,
        headers: headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "same-origin",
        cache: "no-store",
        signal: controller ? controller.signal : undefined,
      }).then(
        function (response) {
          return response.text().then(function (text) {
            global.clearTimeout(timer);
            var data = null;
            try {
              data = text ? JSON.parse(text) : null;
            } catch (err) {
              data = null;
            }
            if (!response.ok) {
              throw new ApiError(response.status, UI.problemMessage(response, data), data);
            }
            if (response.status === 204) return null;
            if (!data || typeof data !== "object") {
              throw new ApiError(response.status,
                "The assistant sent an answer I couldn't read. Please try again.");
            }
            return data;
          });
        },
        function (err) {
          global.clearTimeout(timer);
          var aborted = err && err.name === "AbortError";
          throw new ApiError(0, aborted ? UI.TIMEOUT_MESSAGE : UI.OFFLINE_MESSAGE);
        }
      );
    };
  };

  /* ---------- rendering ---------- */

  UI.formatPrice = function (price, currency) {
    if (typeof price !== "number" || !isFinite(price)) return null;
    if (currency) {
      try {
        return new Intl.NumberFormat(undefined, { style: "currency", currency: currency })
          .format(price);
      } catch (err) {
        return currency + " " + price;
      }
    }
    return new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 }).format(price);
  };

  UI.attributeSummary = function (attributes) {
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
  };

  /* A question with its option chips; onAnswer(body, label) sends the tap. */
  UI.renderQuestion = function (question, idPrefix, message, onAnswer, classes) {
    classes = classes || {};
    var group = UI.el("div", "question");
    var promptId = idPrefix + "-prompt";
    group.setAttribute("role", "group");
    group.setAttribute("aria-labelledby", promptId);
    var promptText = question.prompt || "Choose one";
    var said = promptText && message && message.indexOf(promptText) !== -1;
    var prompt = UI.el("p", said ? "question-prompt visually-hidden" : "question-prompt",
                       promptText);
    prompt.id = promptId;
    group.appendChild(prompt);

    var chips = UI.el("div", "chips");
    var chipClass = classes.chip || "chip";
    (question.options || []).forEach(function (option) {
      var label = option.label || String(option.value);
      var text = typeof option.count === "number" ? label + " \u00b7 " + option.count : label;
      var chip = UI.button(text, chipClass, function () {
        onAnswer({ answer: { attribute: question.attribute, value: option.value } }, label);
      });
      chips.appendChild(chip);
    });
    chips.appendChild(UI.button("No preference", chipClass + " chip--skip", function () {
      onAnswer({ answer: { attribute: question.attribute, value: null } }, "No preference");
    }));
    group.appendChild(chips);
    return group;
  };

  /* A pick card. onFeedback(body, said, markPressed) sends a feedback button's tap; without
   * it the card has no feedback buttons. A pick with in_store_label shows it. */
  UI.renderPick = function (pick, cardId, onFeedback, tag) {
    var card = UI.el(tag || "li", "pick");
    card.dataset.productId = String(pick.product_id);
    var titleId = cardId + "-title";
    var title = UI.el("h3", "pick-title", pick.title || "Untitled product");
    title.id = titleId;
    card.appendChild(title);

    var price = UI.formatPrice(pick.price, pick.currency);
    if (price) card.appendChild(UI.el("p", "pick-price", price));

    if (typeof pick.in_store_label === "string") {
      var state = pick.in_store === true ? "yes" : pick.in_store === false ? "no" : "unknown";
      var stock = UI.el("p", "pick-stock pick-stock--" + state, pick.in_store_label);
      card.appendChild(stock);
    }

    var summary = UI.attributeSummary(pick.attributes);
    if (summary) card.appendChild(UI.el("p", "pick-attributes", summary));

    var reasons = Array.isArray(pick.reasons) ? pick.reasons : [];
    if (reasons.length) {
      var list = UI.el("ul", "pick-reasons");
      list.setAttribute("aria-label", "Why this pick");
      reasons.forEach(function (reason) { list.appendChild(UI.el("li", null, reason)); });
      card.appendChild(list);
    }

    if (onFeedback) {
      var actions = UI.el("div", "pick-feedback");
      UI.FEEDBACK.forEach(function (f) {
        var b = UI.button(f.label, "feedback feedback--" + f.kind, function () {
          onFeedback({ feedback: { product_id: pick.product_id, kind: f.kind } },
                     f.label + ": " + (pick.title || "this one"), function () {
            b.setAttribute("aria-pressed", "true");
          });
        });
        b.setAttribute("aria-describedby", titleId);
        actions.appendChild(b);
      });
      card.appendChild(actions);
    }
    return card;
  };

  /* The "more / cheaper / start over" bar; onAction(body, label). */
  UI.renderActions = function (onAction, className) {
    var bar = UI.el("div", "actions");
    UI.ACTIONS.forEach(function (a) {
      bar.appendChild(UI.button(a.label, (className || "action") + " action--" + a.action,
        function () { onAction({ action: a.action }, a.label); }));
    });
    return bar;
  };

  /* What the shopper sent for a kept turn (its `request`), in words, or null if nothing.
   * `previous` is the Turn before it, for option labels; `titles` maps product ids to titles. */
  UI.shopperWords = function (turn, previous, titles) {
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
      if (said.action === "ask_for_person") return "Talk to a person";
      var match = UI.ACTIONS.filter(function (a) { return a.action === said.action; })[0];
      return match ? match.label : said.action;
    }
    if (said.feedback && typeof said.feedback === "object") {
      var fb = UI.FEEDBACK.filter(function (f) { return f.kind === said.feedback.kind; })[0];
      var title = titles[String(said.feedback.product_id)] || "this one";
      return (fb ? fb.label : String(said.feedback.kind)) + ": " + title;
    }
    return null;
  };

  /* One message in a conversation log: a list item holding a bubble of plain text. */
  UI.addEntry = function (log, kind, text) {
    var item = UI.el("li", "entry entry--" + kind);
    item.appendChild(UI.el("p", "bubble", text));
    log.appendChild(item);
    return item;
  };

  /* The previous turn's chips and action buttons no longer apply once a new turn arrives. */
  UI.retireTurns = function (log) {
    Array.prototype.forEach.call(log.querySelectorAll(".turn.is-current"), function (turn) {
      turn.classList.remove("is-current");
      Array.prototype.forEach.call(turn.querySelectorAll(".chips, .actions"), function (node) {
        node.parentNode.removeChild(node);
      });
    });
  };

  global.ShopperUI = UI;
})(window);
