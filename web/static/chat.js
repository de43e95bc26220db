/* The shopper's chat page: talks to the public HTTP API (API.md) through fetch().
 *
 * Safety rule for this file: shopper and catalog text only ever reaches the page through
 * textContent / createElement, never through innerHTML or attribute-built markup.
 */
(function () {
  "use strict";

  var STORAGE_KEY = "personal-shopper:conversation";
  var UI = window.ShopperUI;
  var OFFLINE_MESSAGE = UI.OFFLINE_MESSAGE;
  var EXPIRED_MESSAGE =
    "This conversation has ended. Type what you're looking for to start a new one.";
  var RESTARTED_MESSAGE = "That conversation had ended, so I've started a new one.";
  var WELCOME =
    "Hi! Tell me what you're looking for \u2014 for example \u201crunning shoes for my " +
    "husband\u201d or \u201ca navy kurta under 1500\u201d.";
  var TIMEOUT_MS = 60000;

  var apiRoot = "/api/v1";
  var chat, log, form, input, sendButton, statusLine;
  var conversation = null; // {id, token}
  var busy = false;
  var turnSeq = 0;
  var picksShown = false;

  /* ---------- small DOM helpers (text only, never markup) ---------- */

  var el = UI.el;

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

  var ApiError = UI.ApiError;
  var conversationGone = UI.conversationGone;
  var api = UI.createApi({ root: function () { return apiRoot; }, timeoutMs: TIMEOUT_MS });

  /* ---------- rendering ---------- */

  function addEntry(kind, text) {
    return UI.addEntry(log, kind, text);
  }

  function showError(message) {
    var item = addEntry("error", message);
    scrollToEntry(item);
    return item;
  }

  function renderQuestion(question, turnId, message) {
    return UI.renderQuestion(question, turnId, message, function (body, label) {
      send(body, label);
    });
  }

  function renderPick(pick, cardId) {
    return UI.renderPick(pick, cardId, function (body, said, markPressed) {
      send(body, said, markPressed);
    });
  }

  function renderActions() {
    return UI.renderActions(function (body, label) { send(body, label); });
  }

  function renderTurn(turn) {
    UI.retireTurns(log);
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

  var shopperWords = UI.shopperWords;

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
