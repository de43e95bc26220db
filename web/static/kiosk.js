/* The in-store kiosk: touch only, big targets, and it forgets every shopper.
 *
 * Everything goes through the public API. Nothing is written to storage: the conversation,
 * its token and any linked profile live in this script's variables only, and are dropped
 * (and the profile unlinked on the server) when the shopper leaves or after the idle time.
 * Shopper and catalog text only ever reach the page through textContent.
 */
(function () {
  "use strict";

  var UI = window.ShopperUI;
  var el = UI.el;
  var WELCOME = "Hi! What are you looking for today? Tap one to start, or type it.";
  var STARTERS = ["Shoes", "T-shirts", "Kurtas", "Watches", "Handbags"];
  var LETTERS = ["QWERTYUIOP", "ASDFGHJKL", "ZXCVBNM"];
  var DIGITS = "1234567890";
  var CODE_KEYS = ["ABCDEFGHJK", "LMNPQRSTUV", "WXYZ234567", "89"];

  var app, main, messageLine, errorLine, overlay, stillThere, linkButton;
  var api, config;
  var conversation = null; // {id, token}: memory only
  var linked = false;
  var busy = false;
  var lastTouch = Date.now();
  var askedAt = null;
  var seq = 0;

  /* ---------- helpers ---------- */

  function bigButton(label, className, onClick) {
    return UI.button(label, "kiosk-button " + (className || ""), function (event) {
      if (!busy) onClick(event);
    });
  }

  function setBusy(on) {
    busy = on;
    app.setAttribute("aria-busy", on ? "true" : "false");
    app.dataset.busy = on ? "true" : "false";
  }

  function showError(message) {
    errorLine.textContent = message || "";
    errorLine.hidden = !message;
  }

  function closeOverlay() {
    overlay.hidden = true;
    while (overlay.firstChild) overlay.removeChild(overlay.firstChild);
  }

  function openOverlay(title, nodes) {
    closeOverlay();
    var box = el("div", "kiosk-dialog");
    box.setAttribute("role", "dialog");
    box.setAttribute("aria-modal", "true");
    var heading = el("h2", "kiosk-dialog-title", title);
    heading.id = "kiosk-dialog-title";
    box.setAttribute("aria-labelledby", heading.id);
    box.appendChild(heading);
    nodes.forEach(function (n) { box.appendChild(n); });
    box.appendChild(bigButton("Close", "kiosk-button--quiet", closeOverlay));
    overlay.appendChild(box);
    overlay.hidden = false;
    var first = box.querySelector("button");
    if (first) first.focus({ preventScroll: true });
    return box;
  }

  /* An on-screen keyboard: rows of keys, a read-only display, and a submit key. */
  function keyboard(rows, options) {
    var wrap = el("div", "osk");
    var display = el("input", "osk-display");
    display.readOnly = true;
    display.setAttribute("inputmode", "none");
    display.setAttribute("aria-label", options.label);
    display.placeholder = options.placeholder || "";
    display.maxLength = options.maxLength || 200;
    wrap.appendChild(display);
    function type(ch) {
      if (display.value.length < display.maxLength) display.value += ch;
    }
    rows.forEach(function (row) {
      var line = el("div", "osk-row");
      row.split("").forEach(function (ch) {
        var key = UI.button(options.lower ? ch.toLowerCase() : ch, "osk-key", function () {
          type(options.lower ? ch.toLowerCase() : ch);
        });
        line.appendChild(key);
      });
      wrap.appendChild(line);
    });
    var last = el("div", "osk-row");
    if (options.space) {
      last.appendChild(UI.button("Space", "osk-key osk-key--wide", function () { type(" "); }));
    }
    var back = UI.button("\u232b", "osk-key osk-key--wide", function () {
      display.value = display.value.slice(0, -1);
    });
    back.setAttribute("aria-label", "Delete the last letter");
    last.appendChild(back);
    last.appendChild(UI.button(options.submitLabel, "osk-key osk-key--submit", function () {
      var value = display.value.trim();
      if (value && !busy) options.onSubmit(value, display);
    }));
    wrap.appendChild(last);
    return wrap;
  }

  /* ---------- the screens ---------- */

  function clearMain() {
    while (main.firstChild) main.removeChild(main.firstChild);
  }

  function renderStart() {
    clearMain();
    messageLine.textContent = WELCOME;
    var grid = el("div", "kiosk-options kiosk-starters");
    STARTERS.forEach(function (text) {
      grid.appendChild(bigButton(text, "kiosk-option", function () { say(text, text); }));
    });
    grid.appendChild(bigButton("Type it\u2026", "kiosk-option kiosk-option--type", openTyping));
    main.appendChild(grid);
  }

  function renderTurn(turn) {
    clearMain();
    seq += 1;
    var id = "k-turn-" + seq;
    messageLine.textContent = turn.message || "";
    app.dataset.state = String(turn.state || "");
    if (typeof turn.handoff_code === "string") {
      var code = el("p", "kiosk-code", turn.handoff_code);
      code.setAttribute("aria-label", "Your code: " + turn.handoff_code.split("").join(" "));
      main.appendChild(code);
    }
    if (turn.question) {
      main.appendChild(UI.renderQuestion(turn.question, id, turn.message, function (body, label) {
        send(body, label);
      }, { chip: "chip kiosk-option" }));
      main.appendChild(bigButton("Type an answer\u2026", "kiosk-button--quiet", openTyping));
    }
    var picks = Array.isArray(turn.picks) ? turn.picks : [];
    if (picks.length) {
      var list = el("ol", "picks kiosk-picks");
      list.setAttribute("aria-label", picks.length === 1 ? "1 pick" : picks.length + " picks");
      picks.forEach(function (pick, i) {
        list.appendChild(UI.renderPick(pick, id + "-pick-" + i, null));
      });
      main.appendChild(list);
      var bar = UI.renderActions(function (body, label) { send(body, label); },
                                 "action kiosk-button");
      bar.appendChild(bigButton("Take these with me", "action action--share", share));
      main.appendChild(bar);
    } else if (!turn.question && turn.state !== "handoff") {
      var again = el("div", "actions");
      again.appendChild(bigButton("Start over", "action", function () {
        send({ action: "start_over" }, "Start over");
      }));
      again.appendChild(bigButton("Type it\u2026", "action", openTyping));
      main.appendChild(again);
    }
  }

  function openTyping() {
    var board = keyboard(LETTERS.concat([DIGITS]), {
      label: "What you are looking for", placeholder: "Tap the letters", lower: true,
      space: true, submitLabel: "Send", maxLength: 200,
      onSubmit: function (text) {
        closeOverlay();
        say(text, text);
      },
    });
    openOverlay("Type what you are looking for", [board]);
  }

  /* ---------- the API ---------- */

  function ensureConversation(text) {
    if (conversation) return Promise.resolve(null);
    var body = { channel: "kiosk" };
    if (config.storeId) body.store_id = config.storeId;
    if (config.catalog) body.catalog = config.catalog;
    if (text) body.text = text;
    return api("POST", "/conversations", body).then(function (turn) {
      conversation = { id: String(turn.conversation_id), token: String(turn.token) };
      return turn;
    });
  }

  function path(suffix) {
    return "/conversations/" + encodeURIComponent(conversation.id) + (suffix || "");
  }

  function run(promise) {
    setBusy(true);
    showError("");
    return promise.then(
      function (result) {
        setBusy(false);
        return result;
      },
      function (err) {
        setBusy(false);
        if (UI.conversationGone(err)) {
          conversation = null;
          linked = false;
          updateLink();
        }
        showError(err instanceof UI.ApiError ? err.message : UI.OFFLINE_MESSAGE);
        return null;
      }
    );
  }

  function say(text) {
    send({ text: text });
  }

  function send(body) {
    if (busy) return;
    var request = conversation ?
      api("POST", path("/turns"), body, conversation.token) :
      typeof body.text === "string" ? ensureConversation(body.text) :
      Promise.reject(new UI.ApiError(0, "Tap an option or type what you want to start."));
    run(request).then(function (turn) {
      if (turn) renderTurn(turn);
    });
  }

  function share() {
    if (!conversation) return;
    run(api("POST", path("/share"), {}, conversation.token)).then(function (link) {
      if (!link) return;
      var img = el("img", "kiosk-qr");
      img.src = link.qr_svg_url;
      img.alt = "QR code with a link to these picks";
      img.width = 280;
      img.height = 280;
      openOverlay("Take these picks with you", [
        img,
        el("p", null, "Scan with your phone\u2019s camera. The link works for 30 minutes " +
           "and holds only the list of products, nothing about you."),
      ]);
    });
  }

  function askForPerson() {
    run(ensureConversation(null).then(function () {
      return api("POST", path("/handoff"), {}, conversation.token);
    })).then(function (turn) {
      if (turn) renderTurn(turn);
    });
  }

  function updateLink() {
    linkButton.textContent = linked ? "Unlink my profile" : "Link my profile";
    app.dataset.linked = linked ? "true" : "false";
  }

  function toggleLink() {
    if (linked) {
      run(api("DELETE", path("/link"), undefined, conversation.token)).then(function (res) {
        if (!res) return;
        linked = false;
        updateLink();
        messageLine.textContent = res.message;
      });
      return;
    }
    var board = keyboard(CODE_KEYS, {
      label: "Your link code", placeholder: "Code from your profile page", submitLabel: "Link",
      maxLength: 12,
      onSubmit: function (code, display) {
        run(ensureConversation(null).then(function () {
          return api("POST", path("/link"), { code: code }, conversation.token);
        })).then(function (res) {
          if (!res) {
            display.value = "";
            return;
          }
          linked = true;
          updateLink();
          closeOverlay();
          messageLine.textContent = res.message;
        });
      },
    });
    openOverlay("Link your profile", [
      el("p", null, "Open your profile on the shop\u2019s website or app, tap \u201cLink a " +
         "kiosk\u201d and enter the code shown there."),
      board,
    ]);
  }

  /* ---------- leaving: forget everything ---------- */

  function wipe() {
    var old = conversation;
    var wasLinked = linked;
    conversation = null;
    linked = false;
    askedAt = null;
    stillThere.hidden = true;
    closeOverlay();
    showError("");
    setBusy(false);
    updateLink();
    app.dataset.state = "start";
    renderStart();
    if (old) {
      var done = function () {
        return api("POST", "/conversations/" + encodeURIComponent(old.id) + "/turns",
                   { action: "done" }, old.token);
      };
      var unlink = wasLinked ?
        api("DELETE", "/conversations/" + encodeURIComponent(old.id) + "/link", undefined,
            old.token) : Promise.resolve();
      unlink.then(done, done).catch(function () { /* best effort: nothing stays here */ });
    }
    app.dataset.wiped = String(Number(app.dataset.wiped || "0") + 1);
  }

  function touched() {
    lastTouch = Date.now();
    if (askedAt !== null) {
      askedAt = null;
      stillThere.hidden = true;
    }
  }

  function dirty() {
    return conversation !== null || !overlay.hidden || !errorLine.hidden;
  }

  function tick() {
    var now = Date.now();
    if (askedAt === null) {
      if (dirty() && !busy && now - lastTouch >= config.idleMs) {
        askedAt = now;
        stillThere.hidden = false;
        stillThere.querySelector("button").focus({ preventScroll: true });
      }
    } else if (now - askedAt >= config.stillThereMs) {
      wipe();
    }
  }

  /* ---------- start-up ---------- */

  function start() {
    app = document.getElementById("kiosk");
    main = document.getElementById("kiosk-main");
    messageLine = document.getElementById("kiosk-message");
    errorLine = document.getElementById("kiosk-error");
    overlay = document.getElementById("kiosk-overlay");
    stillThere = document.getElementById("kiosk-still-there");
    config = {
      storeId: app.dataset.storeId || null,
      catalog: app.dataset.catalog || null,
      idleMs: Math.max(1, parseInt(app.dataset.idle || "90", 10)) * 1000,
      stillThereMs: Math.max(1, parseInt(app.dataset.stillThere || "20", 10)) * 1000,
    };
    api = UI.createApi({ root: app.dataset.apiRoot || "/api/v1", timeoutMs: 20000 });

    var tools = document.getElementById("kiosk-tools");
    linkButton = bigButton("Link my profile", "kiosk-button--quiet", toggleLink);
    tools.appendChild(linkButton);
    tools.appendChild(bigButton("Talk to a person", "kiosk-button--quiet", askForPerson));
    tools.appendChild(bigButton("I\u2019m done", "kiosk-button--quiet", wipe));
    stillThere.appendChild(bigButton("Yes, I\u2019m still here", "", touched));
    stillThere.appendChild(bigButton("No, start again", "kiosk-button--quiet", wipe));

    ["pointerdown", "keydown", "touchstart"].forEach(function (type) {
      document.addEventListener(type, touched, { capture: true, passive: true });
    });
    window.setInterval(tick, 250);
    updateLink();
    app.dataset.state = "start";
    renderStart();
    document.documentElement.dataset.kioskReady = "true";
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
