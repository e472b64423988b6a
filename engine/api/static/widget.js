/* Studio Automations web chat widget.
 * <script src="https://<api>/widget.js" data-studio="wc_..." data-title="Chat with us" async></script>
 * Opens a chat box; posts the visitor's messages and shows the studio's replies.
 * The conversation id and its token are random bytes from crypto.getRandomValues; the token goes
 * with every request in the X-Chat-Token header (never in a URL), and the server answers only
 * the browser that holds it. No dependencies; text is always inserted as text (never as HTML). */
(function () {
  "use strict";
  var script = document.currentScript || document.querySelector("script[data-studio]");
  if (!script) { return; }
  var key = script.getAttribute("data-studio");
  var title = script.getAttribute("data-title") || "Chat with us";
  var base = new URL(script.src, window.location.href).origin;
  var url = base + "/chat/" + encodeURIComponent(key) + "/messages";
  var storeKey = "sa-chat2-" + key;
  try { window.localStorage.removeItem("sa-chat-" + key); } catch (e) { /* the old, token-less conversation */ }

  function randomHex(bytes) {
    var a = new Uint8Array(bytes), out = "";
    window.crypto.getRandomValues(a);
    for (var i = 0; i < a.length; i++) { out += (a[i] < 16 ? "0" : "") + a[i].toString(16); }
    return out;
  }
  function save() {
    try { window.localStorage.setItem(storeKey, JSON.stringify(chat)); } catch (e) { /* storage blocked */ }
  }
  function freshChat() { chat = { id: "c" + randomHex(16), token: randomHex(32), started: false }; save(); }

  var chat = null;
  try { chat = JSON.parse(window.localStorage.getItem(storeKey) || "null"); } catch (e) { chat = null; }
  if (!chat || !chat.id || !chat.token) { freshChat(); }
  var lastAt = null, seen = {}, timer = null;

  function el(tag, style, text) {
    var node = document.createElement(tag);
    if (style) { node.setAttribute("style", style); }
    if (text) { node.textContent = text; }
    return node;
  }

  var root = el("div", "position:fixed;right:20px;bottom:20px;z-index:2147483000;font:14px/1.4 system-ui,sans-serif;");
  root.id = "sa-chat";
  var button = el("button", "background:#4f46e5;color:#fff;border:0;border-radius:24px;padding:12px 18px;cursor:pointer;box-shadow:0 4px 12px rgba(0,0,0,.2);", title);
  button.id = "sa-chat-open";
  var panel = el("div", "display:none;width:320px;height:420px;background:#fff;border:1px solid #ddd;border-radius:12px;box-shadow:0 8px 24px rgba(0,0,0,.2);flex-direction:column;overflow:hidden;");
  panel.id = "sa-chat-panel";
  var head = el("div", "background:#4f46e5;color:#fff;padding:10px 12px;font-weight:600;display:flex;justify-content:space-between;", title);
  var close = el("button", "background:none;border:0;color:#fff;cursor:pointer;font-size:16px;", "×");
  close.setAttribute("aria-label", "Close chat");
  head.appendChild(close);
  var log = el("div", "flex:1;overflow-y:auto;padding:10px;background:#f8f8fb;");
  log.id = "sa-chat-log";
  log.setAttribute("aria-live", "polite");
  var status = el("div", "color:#b91c1c;font-size:12px;padding:0 10px;min-height:16px;");
  status.id = "sa-chat-status";
  var form = el("form", "display:flex;border-top:1px solid #eee;");
  var input = el("input", "flex:1;border:0;padding:10px;font:inherit;outline:none;");
  input.id = "sa-chat-input";
  input.setAttribute("placeholder", "Type a message…");
  input.setAttribute("maxlength", "2000");
  var send = el("button", "border:0;background:#4f46e5;color:#fff;padding:0 14px;cursor:pointer;", "Send");
  send.id = "sa-chat-send";
  form.appendChild(input); form.appendChild(send);
  panel.appendChild(head); panel.appendChild(log); panel.appendChild(status); panel.appendChild(form);
  root.appendChild(panel); root.appendChild(button);

  function bubble(text, mine) {
    var row = el("div", "display:flex;margin:4px 0;justify-content:" + (mine ? "flex-end" : "flex-start") + ";");
    var b = el("div", "max-width:80%;padding:8px 10px;border-radius:10px;white-space:pre-wrap;word-wrap:break-word;" +
      (mine ? "background:#4f46e5;color:#fff;" : "background:#fff;border:1px solid #e5e5ef;"), text);
    b.className = mine ? "sa-chat-mine" : "sa-chat-reply";
    row.appendChild(b); log.appendChild(row); log.scrollTop = log.scrollHeight;
  }

  function poll() {
    if (!chat.started) { return; }  // nothing to read before the first message binds the token
    var q = url + "?conversationId=" + encodeURIComponent(chat.id) + (lastAt ? "&after=" + encodeURIComponent(lastAt) : "");
    fetch(q, { method: "GET", mode: "cors", headers: { "X-Chat-Token": chat.token } }).then(function (r) { return r.ok ? r.json() : []; }).then(function (items) {
      items.forEach(function (m) {
        if (!seen[m.id]) { seen[m.id] = true; bubble(m.text, false); }
        lastAt = m.at;
      });
    }).catch(function () { /* offline: try again */ });
  }

  function deliver(text, messageId, again) {
    return fetch(url, { method: "POST", mode: "cors",
      headers: { "Content-Type": "application/json", "X-Chat-Token": chat.token },
      body: JSON.stringify({ conversationId: chat.id, clientMessageId: messageId, text: text }) })
      .then(function (r) {
        if (r.status === 404 && again) {
          // Not ours (a conversation from before tokens): start a new one and send it there.
          freshChat(); lastAt = null;
          return deliver(text, messageId, false);
        }
        if (!r.ok) { return r.json().then(function (e) { status.textContent = (e.error && e.error.message) || "Could not send."; }); }
        if (!chat.started) { chat.started = true; save(); }
        setTimeout(poll, 300);
      });
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = input.value.trim();
    if (!text) { return; }
    input.value = ""; status.textContent = "";
    bubble(text, true);
    deliver(text, "m" + randomHex(12), true)
      .catch(function () { status.textContent = "Could not reach the studio. Please try again."; });
  });
  button.addEventListener("click", function () {
    panel.style.display = "flex"; button.style.display = "none"; input.focus();
    poll(); if (!timer) { timer = setInterval(poll, 2000); }
  });
  close.addEventListener("click", function () { panel.style.display = "none"; button.style.display = "inline-block"; });
  (document.body || document.documentElement).appendChild(root);
})();
