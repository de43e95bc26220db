/* The agent console: find a caller's profile, talk for them on the phone channel, continue a
 * hand-off. Everything goes through the public API with the console's session cookie and its
 * CSRF token (X-CSRF-Token). Shopper and catalog text only reach the page through textContent.
 */
(function () {
  "use strict";

  var UI = window.ShopperUI;
  var el = UI.el;
  var root, api, errorLine;
  var shopperId = null;
  var conversation = null; // {id}
  var turns = [];
  var busy = false;

  function $(id) {
    return document.getElementById(id);
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function showError(message) {
    errorLine.textContent = message || "";
    errorLine.hidden = !message;
  }

  function fail(err) {
    busy = false;
    root.dataset.busy = "false";
    var message = err instanceof UI.ApiError ? err.message : UI.OFFLINE_MESSAGE;
    if (err instanceof UI.ApiError && err.status === 401) {
      message = "Your session has ended. Reload the page and log in again.";
    }
    showError(message);
  }

  function call(method, path, body) {
    busy = true;
    root.dataset.busy = "true";
    showError("");
    return api(method, path, body).then(function (data) {
      busy = false;
      root.dataset.busy = "false";
      return data;
    });
  }

  /* ---------- the profile ---------- */

  function preferenceLine(p) {
    var text = p.attribute + ": " + p.value + " (" + (p.polarity === "avoid" ? "avoids" : "likes") +
      ")";
    var item = el("li", null, text);
    if (p.evidence) item.appendChild(el("span", "console-evidence", " \u2014 " + p.evidence));
    return item;
  }

  function fillList(list, items, empty) {
    clear(list);
    if (!items.length) list.appendChild(el("li", "console-empty", empty));
    items.forEach(function (node) { list.appendChild(node); });
  }

  function showProfile(profile, events) {
    $("profile").hidden = false;
    $("profile-title").textContent = "Profile of " + profile.shopper_id;
    fillList($("stated"), (profile.stated || []).map(preferenceLine), "Nothing stated yet.");
    fillList($("inferred"), (profile.inferred || []).map(preferenceLine),
             "Nothing inferred yet.");
    var purchases = (events.events || []).filter(function (e) { return e.type === "purchase"; });
    fillList($("purchases"), purchases.map(function (e) {
      return el("li", null, (e.title || e.product_id) + " \u2014 " + String(e.at).slice(0, 10));
    }), "No purchases recorded.");
  }

  function lookUp(id) {
    var path = "/shoppers/" + encodeURIComponent(id);
    return call("GET", path + "/profile").then(function (profile) {
      return call("GET", path + "/events").then(function (events) {
        shopperId = id;
        showProfile(profile, events);
      });
    });
  }

  /* ---------- the conversation ---------- */

  function renderTranscript() {
    var list = $("transcript");
    clear(list);
    var previous = null;
    var titles = {};
    turns.forEach(function (turn) {
      var words = UI.shopperWords(turn, previous, titles);
      if (words) {
        var mine = el("li", "entry entry--shopper");
        mine.appendChild(el("p", "bubble", "Caller: " + words));
        list.appendChild(mine);
      }
      var said = el("li", "entry entry--assistant");
      said.appendChild(el("p", "bubble", turn.message || ""));
      list.appendChild(said);
      (turn.picks || []).forEach(function (p) { titles[String(p.product_id)] = p.title; });
      previous = turn;
    });
    if (list.lastElementChild) list.lastElementChild.scrollIntoView({ block: "nearest" });
  }

  function renderScript(turn) {
    var box = $("script");
    clear(box);
    box.appendChild(el("h3", null, "Read aloud"));
    box.appendChild(el("p", "console-say", turn.message || ""));
    if (turn.question) {
      box.appendChild(el("p", null, "Offer these options (tap the one the caller chooses):"));
      box.appendChild(UI.renderQuestion(turn.question, "call-" + turns.length, "",
                                        function (body) { send(body); }));
    }
    var picksBox = $("picks");
    clear(picksBox);
    var picks = turn.picks || [];
    if (picks.length) {
      picksBox.appendChild(el("h3", null, "Picks to read out, with their reasons"));
      var list = el("ol", "picks console-picks");
      picks.forEach(function (pick, i) {
        list.appendChild(UI.renderPick(pick, "call-pick-" + i, function (body) { send(body); }));
      });
      picksBox.appendChild(list);
      picksBox.appendChild(UI.renderActions(function (body) { send(body); }));
    }
  }

  function showConversation(id, allTurns) {
    conversation = { id: id };
    turns = allTurns;
    $("call-empty").hidden = true;
    $("call").hidden = false;
    root.dataset.conversationId = id;
    renderTranscript();
    renderScript(turns[turns.length - 1] || { message: "" });
    $("caller-says").focus();
  }

  function send(body) {
    if (!conversation || busy) return;
    call("POST", "/conversations/" + encodeURIComponent(conversation.id) + "/turns", body)
      .then(function (turn) {
        turn.request = body;
        turns.push(turn);
        renderTranscript();
        renderScript(turn);
        if (typeof body.text === "string") $("caller-says").value = "";
        $("caller-says").focus();
      }, fail);
  }

  function startCall(forShopper) {
    var body = { channel: "phone" };
    if (forShopper && shopperId) body.shopper_id = shopperId;
    call("POST", "/conversations", body).then(function (turn) {
      turn.request = {};
      showConversation(turn.conversation_id, [turn]);
    }, fail);
  }

  /* ---------- forms ---------- */

  function onSubmit(id, handler) {
    $(id).addEventListener("submit", function (event) {
      event.preventDefault();
      if (!busy) handler(new FormData(event.target));
    });
  }

  function start() {
    root = $("console");
    errorLine = $("console-error");
    var csrf = root.dataset.csrf;
    api = UI.createApi({
      root: root.dataset.apiRoot || "/api/v1",
      timeoutMs: 30000,
      headers: function () { return { "X-CSRF-Token": csrf }; },
    });

    onSubmit("find-form", function (form) {
      var id = String(form.get("shopper_id") || "").trim();
      if (!id) return;
      if (/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(id)) {
        // An e-mail the shop gave for the shopper; an id may hold "@" too, so fall back.
        call("GET", "/shoppers?email=" + encodeURIComponent(id)).then(function (found) {
          return lookUp(found.shopper_id);
        }, function () { return lookUp(id); }).catch(fail);
      } else {
        lookUp(id).catch(fail);
      }
    });
    onSubmit("pref-form", function (form) {
      if (!shopperId) return;
      var body = {
        attribute: String(form.get("attribute") || "").trim(),
        value: String(form.get("value") || "").trim(),
        polarity: String(form.get("polarity") || "want"),
        said: String(form.get("said") || "").trim(),
      };
      call("PUT", "/shoppers/" + encodeURIComponent(shopperId) + "/preferences", body)
        .then(function () {
          $("pref-form").reset();
          return lookUp(shopperId);
        }).catch(fail);
    });
    onSubmit("handoff-form", function (form) {
      var code = String(form.get("code") || "").replace(/\s+/g, "");
      call("POST", "/handoffs", { code: code }).then(function (data) {
        $("handoff-form").reset();
        var id = data.shopper_id;
        showConversation(data.conversation_id, data.turns || []);
        if (id) return lookUp(id);
        return null;
      }).catch(fail);
    });
    onSubmit("say-form", function (form) {
      var text = String(form.get("text") || "").trim();
      if (text) send({ text: text });
    });
    $("start-call").addEventListener("click", function () { startCall(true); });
    $("anonymous-call").addEventListener("click", function () { startCall(false); });
    document.documentElement.dataset.consoleReady = "true";
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
