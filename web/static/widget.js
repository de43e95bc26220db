/* The shop's chat widget: one tag on any page of the shop adds a launcher and a chat panel.
 *
 *   <script src="/static/widget.js" defer
 *           data-conversation-id="c_..." data-token="..."   (optional: a signed-in shopper's
 *                                                            conversation, minted by the shop)
 *           data-catalog="fashion" data-title="Ask our shopper" data-timeout-ms="30000"
 *           data-api-root="https://shop.example/api/v1"></script>
 *
 * The panel lives in a shadow root (the shop's CSS cannot break it, ours cannot leak out) and
 * reuses chat.css plus widget.css and the shared ShopperUI module (shopper-ui.js), which it
 * loads from beside this file. It keeps the conversation across page loads in
 * sessionStorage. Shopper and catalog text only ever reach the page through textContent.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script || window.__personalShopperWidget) return;
  window.__personalShopperWidget = true;

  var STORAGE_KEY = "personal-shopper:widget";
  var staticRoot = script.src.replace(/[^/]*$/, "");
  var origin = new URL(script.src, window.location.href).origin;
  var data = script.dataset;
  var config = {
    apiRoot: data.apiRoot || origin + "/api/v1",
    catalog: data.catalog || null,
    title: data.title || "Shopping assistant",
    timeoutMs: parseInt(data.timeoutMs || "", 10) > 0 ? parseInt(data.timeoutMs, 10) : 30000,
    conversationId: data.conversationId || null,
    token: data.token || null,
  };
  var WELCOME = "Hi! Tell me what you're looking for \u2014 for example \u201crunning shoes " +
    "for my husband\u201d.";
  var EXPIRED = "This conversation has ended. Type what you're looking for to start a new one.";

  var UI, api, el;
  var host, root, panel, launcher, log, form, input, sendButton, statusLine, personButton;
  var conversation = null; // {id, token}
  var busy = false;
  var open = false;
  var turnSeq = 0;
  var picksShown = false;

  function whenUiLoaded(then) {
    if (window.ShopperUI) return then();
    var existing = document.querySelector("script[data-shopper-ui]");
    var loader = existing || document.createElement("script");
    loader.addEventListener("load", then);
    loader.addEventListener("error", function () {
      if (window.console) window.console.error("personal-shopper: cannot load shopper-ui.js");
    });
    if (!existing) {
      loader.src = staticRoot + "shopper-ui.js";
      loader.dataset.shopperUi = "true";
      document.head.appendChild(loader);
    }
  }

  /* ---------- storage ---------- */

  function loadSaved() {
    try {
      var saved = JSON.parse(window.sessionStorage.getItem(STORAGE_KEY) || "null");
      if (saved && typeof saved === "object") return saved;
    } catch (err) {
      /* storage blocked or corrupt */
    }
    return {};
  }

  function save() {
    try {
      window.sessionStorage.setItem(STORAGE_KEY, JSON.stringify({
        id: conversation ? conversation.id : null,
        token: conversation ? conversation.token : null,
        open: open,
      }));
    } catch (err) {
      /* storage blocked: the conversation won't survive a page load */
    }
  }

  /* ---------- the panel ---------- */

  function build() {
    host = document.createElement("div");
    host.id = "personal-shopper-widget";
    host.dataset.busy = "false";
    root = host.attachShadow({ mode: "open" });
    ["chat.css", "widget.css"].forEach(function (name) {
      var link = document.createElement("link");
      link.rel = "stylesheet";
      link.href = staticRoot + name;
      root.appendChild(link);
    });

    launcher = UI.button("Ask our shopper", "ps-launcher", function () { toggle(!open); });
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-controls", "ps-panel");
    root.appendChild(launcher);

    panel = el("section", "ps-panel");
    panel.id = "ps-panel";
    panel.hidden = true;
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-modal", "false");
    panel.setAttribute("aria-labelledby", "ps-title");

    var header = el("header", "ps-header");
    var title = el("h2", "ps-title", config.title);
    title.id = "ps-title";
    header.appendChild(title);
    personButton = UI.button("Talk to a person", "ps-person", askForPerson);
    header.appendChild(personButton);
    var close = UI.button("\u00d7", "ps-close", function () { toggle(false); });
    close.setAttribute("aria-label", "Close the chat");
    header.appendChild(close);
    panel.appendChild(header);

    var body = el("div", "chat ps-body");
    body.id = "ps-chat";
    log = el("ol", "log");
    log.id = "ps-log";
    log.setAttribute("role", "log");
    log.setAttribute("aria-live", "polite");
    log.setAttribute("aria-relevant", "additions");
    log.setAttribute("aria-label", "Conversation with the assistant");
    body.appendChild(log);
    statusLine = el("p", "status", "The assistant is thinking\u2026");
    statusLine.setAttribute("role", "status");
    statusLine.hidden = true;
    body.appendChild(statusLine);
    panel.appendChild(body);

    form = el("form", "composer");
    form.setAttribute("autocomplete", "off");
    var label = el("label", "visually-hidden", "Message to the assistant");
    label.htmlFor = "ps-message";
    input = el("input", "composer-input");
    input.id = "ps-message";
    input.type = "text";
    input.maxLength = 2000;
    input.setAttribute("enterkeyhint", "send");
    input.placeholder = "e.g. running shoes under 3000";
    sendButton = el("button", "composer-send", "Send");
    sendButton.type = "submit";
    form.appendChild(label);
    form.appendChild(input);
    form.appendChild(sendButton);
    form.addEventListener("submit", onSubmit);
    panel.appendChild(form);
    panel.addEventListener("keydown", function (event) {
      if (event.key === "Escape") {
        toggle(false);
      }
    });
    root.appendChild(panel);

    addEntry("assistant", WELCOME).classList.add("entry--welcome");
    document.body.appendChild(host);
  }

  function toggle(show, moveFocus) {
    open = show;
    panel.hidden = !show;
    launcher.setAttribute("aria-expanded", show ? "true" : "false");
    launcher.textContent = show ? "Close the assistant" : "Ask our shopper";
    host.dataset.open = show ? "true" : "false";
    save();
    if (moveFocus === false) return;
    if (show) {
      input.focus({ preventScroll: true });
      var last = log.lastElementChild;
      if (last) last.scrollIntoView({ block: "start" });
    } else {
      launcher.focus({ preventScroll: true });
    }
  }

  /* ---------- rendering ---------- */

  function addEntry(kind, text) {
    return UI.addEntry(log, kind, text);
  }

  function showError(message) {
    var item = addEntry("error", message);
    item.setAttribute("role", "alert");
    item.scrollIntoView({ block: "nearest" });
    return item;
  }

  function renderTurn(turn) {
    UI.retireTurns(log);
    turnSeq += 1;
    var turnId = "ps-turn-" + turnSeq;
    var item = el("li", "entry entry--assistant turn is-current");
    item.id = turnId;
    if (turn.state) item.dataset.state = String(turn.state);
    item.appendChild(el("p", "bubble", turn.message || "\u2026"));
    if (typeof turn.handoff_code === "string") {
      var code = el("p", "ps-code", turn.handoff_code);
      code.setAttribute("aria-label", "Your code: " + turn.handoff_code.split("").join(" "));
      item.appendChild(code);
    }
    if (turn.question) {
      item.appendChild(UI.renderQuestion(turn.question, turnId, turn.message, send));
    }
    var picks = Array.isArray(turn.picks) ? turn.picks : [];
    if (picks.length) {
      picksShown = true;
      item.appendChild(el("h3", "visually-hidden",
                          picks.length === 1 ? "1 pick" : picks.length + " picks"));
      var list = el("ol", "picks");
      picks.forEach(function (pick, i) {
        list.appendChild(UI.renderPick(pick, turnId + "-pick-" + i, send));
      });
      item.appendChild(list);
    }
    if (picks.length || (picksShown && !turn.question && turn.state !== "handoff")) {
      item.appendChild(UI.renderActions(send));
    }
    log.appendChild(item);
    return item;
  }

  /* ---------- talking to the API ---------- */

  function setBusy(on) {
    busy = on;
    sendButton.disabled = on;
    personButton.disabled = on;
    host.dataset.busy = on ? "true" : "false";
    log.setAttribute("aria-busy", on ? "true" : "false");
    statusLine.hidden = !on;
  }

  function forget() {
    conversation = null;
    picksShown = false;
    save();
  }

  function startConversation(text) {
    var body = { channel: "web" };
    if (text) body.text = text;
    if (config.catalog) body.catalog = config.catalog;
    return api("POST", "/conversations", body).then(function (turn) {
      conversation = { id: String(turn.conversation_id), token: String(turn.token) };
      save();
      return turn;
    });
  }

  function turnPath() {
    return "/conversations/" + encodeURIComponent(conversation.id);
  }

  /* Send one request body; `said` is what the shopper's bubble shows. */
  function send(body, said, onSuccess) {
    if (busy) return Promise.resolve();
    setBusy(true);
    var mine = addEntry("shopper", said);
    mine.classList.add("is-pending");
    var request;
    if (conversation) {
      request = api("POST", turnPath() + "/turns", body, conversation.token)
        .catch(function (err) {
          if (!UI.conversationGone(err)) throw err;
          forget();
          if (typeof body.text !== "string") throw new UI.ApiError(err.status, EXPIRED);
          return startConversation(body.text);
        });
    } else if (typeof body.text === "string") {
      request = startConversation(body.text);
    } else {
      request = Promise.reject(new UI.ApiError(0, EXPIRED));
    }
    return request.then(
      function (turn) {
        mine.classList.remove("is-pending");
        if (typeof body.text === "string" && input.value === body.text) input.value = "";
        if (onSuccess) onSuccess();
        if (body.action === "start_over") picksShown = false;
        var item = renderTurn(turn);
        setBusy(false);
        item.scrollIntoView({ block: "start" });
        input.focus({ preventScroll: true });
      },
      function (err) {
        mine.parentNode.removeChild(mine);
        if (typeof body.text === "string" && !input.value) input.value = body.text;
        showError(err instanceof UI.ApiError ? err.message : UI.OFFLINE_MESSAGE);
        setBusy(false);
        input.focus({ preventScroll: true });
      }
    );
  }

  function askForPerson() {
    if (busy) return;
    setBusy(true);
    var mine = addEntry("shopper", "Talk to a person");
    var ready = conversation ? Promise.resolve() : startConversation(null);
    ready.then(function () {
      return api("POST", turnPath() + "/handoff", {}, conversation.token);
    }).then(
      function (turn) {
        var item = renderTurn(turn);
        setBusy(false);
        item.scrollIntoView({ block: "start" });
        input.focus({ preventScroll: true });
      },
      function (err) {
        mine.parentNode.removeChild(mine);
        showError(err instanceof UI.ApiError ? err.message : UI.OFFLINE_MESSAGE);
        setBusy(false);
      }
    );
  }

  function onSubmit(event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text || busy) return;
    send({ text: text }, text);
  }

  function restore(saved) {
    setBusy(true);
    return api("GET", "/conversations/" + encodeURIComponent(saved.id), undefined, saved.token)
      .then(function (data) {
        conversation = { id: saved.id, token: saved.token };
        var previous = null;
        var titles = {};
        (Array.isArray(data.turns) ? data.turns : []).forEach(function (turn) {
          var words = UI.shopperWords(turn, previous, titles);
          if (words) addEntry("shopper", words);
          if (turn.request && turn.request.action === "start_over") picksShown = false;
          renderTurn(turn);
          (Array.isArray(turn.picks) ? turn.picks : []).forEach(function (pick) {
            titles[String(pick.product_id)] = pick.title;
          });
          previous = turn;
        });
        setBusy(false);
      }, function (err) {
        setBusy(false);
        if (UI.conversationGone(err)) {
          forget();
        } else {
          conversation = { id: saved.id, token: saved.token };
          showError(err.message);
        }
      });
  }

  function start() {
    UI = window.ShopperUI;
    el = UI.el;
    api = UI.createApi({ root: config.apiRoot, timeoutMs: config.timeoutMs });
    build();
    var saved = loadSaved();
    if (config.conversationId && config.token && saved.id !== config.conversationId) {
      saved = { id: config.conversationId, token: config.token, open: saved.open };
    }
    var ready = saved.id && saved.token ? restore(saved) : Promise.resolve();
    ready.then(function () {
      save();
      if (saved.open) toggle(true, false);
      host.dataset.ready = "true";
    });
  }

  function boot() {
    whenUiLoaded(start);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", boot);
  } else {
    boot();
  }
})();
