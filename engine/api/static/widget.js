/* Studio Automations web chat widget.
 * <script src="https://<api>/widget.js" data-studio="wc_..." data-title="Chat with us" async></script>
 * Opens a chat box; posts the visitor's messages and shows the studio's replies.
 * No dependencies; text is always inserted as text (never as HTML). */
(function () {
  "use strict";
  var script = document.currentScript || document.querySelector("script[data-studio]");
  if (!script) { return; }
  var key = script.getAttribute("data-studio");
  var title = script.getAttribute("data-title") || "Chat with us";
  var base = new URL(script.src, window.location.href).origin;
  var url = base + "/chat/" + encodeURIComponent(key) + "/messages";
  var storeKey = "sa-chat-" + key;
  var conversation = null;
  try { conversation = window.localStorage.getItem(storeKey); } catch (e) { /* storage blocked */ }
  if (!conversation) {
    conversation = "c" + Math.random().toString(36).slice(2) + Date.now().toString(36);
    try { window.localStorage.setItem(storeKey, conversation); } catch (e) { /* storage blocked */ }
  }
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
    var q = url + "?conversationId=" + encodeURIComponent(conversation) + (lastAt ? "&after=" + encodeURIComponent(lastAt) : "");
    fetch(q, { method: "GET", mode: "cors" }).then(function (r) { return r.ok ? r.json() : []; }).then(function (items) {
      items.forEach(function (m) {
        if (!seen[m.id]) { seen[m.id] = true; bubble(m.text, false); }
        lastAt = m.at;
      });
    }).catch(function () { /* offline: try again */ });
  }

  function newId() { return "m" + Math.random().toString(36).slice(2) + Date.now().toString(36); }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = input.value.trim();
    if (!text) { return; }
    input.value = ""; status.textContent = "";
    bubble(text, true);
    fetch(url, { method: "POST", mode: "cors", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ conversationId: conversation, clientMessageId: newId(), text: text }) })
      .then(function (r) {
        if (!r.ok) { return r.json().then(function (e) { status.textContent = (e.error && e.error.message) || "Could not send."; }); }
        setTimeout(poll, 300);
      })
      .catch(function () { status.textContent = "Could not reach the studio. Please try again."; });
  });
  button.addEventListener("click", function () {
    panel.style.display = "flex"; button.style.display = "none"; input.focus();
    poll(); if (!timer) { timer = setInterval(poll, 2000); }
  });
  close.addEventListener("click", function () { panel.style.display = "none"; button.style.display = "inline-block"; });
  (document.body || document.documentElement).appendChild(root);
})();
