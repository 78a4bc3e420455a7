public import Hummingbird
import HTTPTypes
import Foundation
import NIOCore

/// `GET /chat`: a small chat page for trying the bot in a browser (on in `make run`'s `parley.yml`, off by
/// default: `server.chat_page`). Everything is in this one response — HTML, CSS and a small Socket.IO v5 /
/// Engine.IO v4 client written for it (WebSocket, with long-polling when the WebSocket cannot open) that speaks
/// Rasa's `session_request` / `user_uttered` / `bot_uttered`. It renders text, buttons and quick replies (a click
/// sends the payload), images and attachments, keeps the session id in `localStorage` so a reload continues the
/// conversation, and shows the history after a reload when the conversation API answers (on a loopback server
/// or with a session token; otherwise it simply starts without it).
///
/// With session persistence it asks for numbered messages: after a lost connection it reconnects and resumes from
/// the last message it shows (`parley.resume_from`, and the chunks of a streamed reply it has), so nothing said
/// meanwhile is missing or shown twice. It shows streamed replies as they come (`stream_start` / `stream_chunk` /
/// `stream_end`) and the typing indicator (`typing_on` / `typing_off`).
public enum ChatPage {
    /// Adds `GET /chat` to `router`; the page connects to `socketIOPath` on the same origin.
    /// - Parameter numbered: ask for numbered messages and resume after a drop (needs session persistence).
    public static func add<Context: RequestContext>(to router: Router<Context>, socketIOPath: String = "/socket.io", numbered: Bool = true) {
        let html = page.replacingOccurrences(of: "__SOCKETIO_PATH__", with: socketIOPath)
            .replacingOccurrences(of: "__NUMBERED__", with: numbered ? "true" : "false")
        router.get("/chat") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
        }
    }

    static let page = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Parley chat</title>
        <style>
          body { margin: 0; font: 15px/1.4 system-ui, sans-serif; background: #eef1f5; display: flex; justify-content: center; }
          main { width: 100%; max-width: 640px; height: 100vh; display: flex; flex-direction: column; background: #fff; }
          header { padding: 12px 16px; background: #2d3a4b; color: #fff; display: flex; justify-content: space-between; align-items: center; }
          header small { opacity: .7; }
          #log { flex: 1; overflow-y: auto; padding: 16px; display: flex; flex-direction: column; gap: 8px; }
          .msg { max-width: 80%; padding: 8px 12px; border-radius: 14px; white-space: pre-wrap; word-wrap: break-word; }
          .user { align-self: flex-end; background: #2f6fed; color: #fff; border-bottom-right-radius: 4px; }
          .bot { align-self: flex-start; background: #e9edf2; border-bottom-left-radius: 4px; }
          .bot img { max-width: 100%; border-radius: 8px; display: block; }
          .buttons { align-self: flex-start; display: flex; flex-wrap: wrap; gap: 6px; }
          .buttons button { border: 1px solid #2f6fed; background: #fff; color: #2f6fed; border-radius: 14px; padding: 4px 12px; cursor: pointer; }
          .note { align-self: center; color: #778; font-size: 13px; }
          .typing { align-self: flex-start; color: #778; font-size: 13px; padding: 0 12px; }
          form { display: flex; gap: 8px; padding: 12px; border-top: 1px solid #dde; }
          input { flex: 1; padding: 10px 12px; border: 1px solid #ccd; border-radius: 18px; font: inherit; }
          form button { padding: 0 18px; border: 0; border-radius: 18px; background: #2f6fed; color: #fff; font: inherit; }
        </style>
        </head>
        <body>
        <main>
          <header><strong>Parley</strong><small id="status">connecting…</small></header>
          <div id="log" aria-live="polite"></div>
          <form id="form"><input id="text" autocomplete="off" placeholder="Type a message…" autofocus><button>Send</button></form>
        </main>
        <script>
        "use strict";
        // A small Engine.IO v4 / Socket.IO v5 client: WebSocket first, long-polling when the WebSocket cannot open.
        const PATH = "__SOCKETIO_PATH__/";
        const NUMBERED = __NUMBERED__;
        const log = document.getElementById("log"), statusEl = document.getElementById("status");
        let sessionId = localStorage.getItem("parley_session");
        // The number of the last bot message shown (numbered messages), and the reply being streamed.
        let lastSeq = Number(localStorage.getItem("parley_seq:" + sessionId) || 0);
        let streaming = null;   // {seq, el, chunks}
        let typingEl = null;
        let transport = null;

        function add(cls, build) {
          const el = document.createElement("div");
          el.className = cls;
          build(el);
          log.insertBefore(el, typingEl);
          log.scrollTop = log.scrollHeight;
          return el;
        }
        function showUser(text) { add("msg user", el => el.textContent = text); }
        function showBot(m) {
          if (m.text) add("msg bot", el => el.textContent = m.text);
          if (m.image) add("msg bot", el => { const i = document.createElement("img"); i.src = m.image; i.alt = "image"; el.appendChild(i); });
          const a = m.attachment;
          if (a && a.payload && a.payload.src) add("msg bot", el => {
            if (a.type === "image") { const i = document.createElement("img"); i.src = a.payload.src; el.appendChild(i); }
            else { const l = document.createElement("a"); l.href = a.payload.src; l.textContent = a.payload.src; l.target = "_blank"; el.appendChild(l); }
          });
          const choices = m.quick_replies || m.buttons;
          if (Array.isArray(choices) && choices.length) add("buttons", el => {
            for (const c of choices) {
              const b = document.createElement("button");
              b.type = "button";
              b.textContent = c.title;
              b.onclick = () => { el.remove(); say(c.payload || c.title, c.title); };
              el.appendChild(b);
            }
          });
          if (!m.text && !m.image && !a && !choices && m.custom !== undefined) add("msg bot", el => el.textContent = JSON.stringify(m.custom));
        }
        function seen(seq) {
          if (typeof seq !== "number" || seq <= lastSeq) return;
          lastSeq = seq;
          localStorage.setItem("parley_seq:" + sessionId, String(seq));
        }
        function typing(on) {
          if (on && !typingEl) { typingEl = document.createElement("div"); typingEl.className = "typing"; typingEl.textContent = "bot is typing…"; log.appendChild(typingEl); }
          if (!on && typingEl) { typingEl.remove(); typingEl = null; }
        }
        function say(payload, shown) {
          if (!sessionId || !transport) return;
          showUser(shown || payload);
          transport.send("42" + JSON.stringify(["user_uttered", { message: payload, session_id: sessionId }]));
        }

        function onPacket(p) {
          if (p[0] === "0") { transport.send("40"); return; }
          if (p === "2") { transport.send("3"); return; }
          if (p[0] !== "4") return;
          const s = p.slice(1);
          if (s[0] === "0") {
            const request = { session_id: sessionId };
            if (NUMBERED) request.parley = sessionId ? { resume_from: lastSeq, chunks: streaming ? streaming.chunks : 0 } : {};
            transport.send("42" + JSON.stringify(["session_request", request]));
            return;
          }
          if (s[0] !== "2") return;
          const [name, arg] = JSON.parse(s.slice(1));
          const parley = (arg && arg.parley) || {};
          if (name === "session_confirm") {
            const fresh = sessionId !== arg;
            sessionId = arg;
            localStorage.setItem("parley_session", arg);
            statusEl.textContent = "connected (" + transport.name + ")";
            if (fresh) add("note", el => el.textContent = "Say hello to the bot.");
          } else if (name === "stream_start") {
            if (!streaming || streaming.seq !== parley.seq) streaming = { seq: parley.seq, el: add("msg bot", () => {}), chunks: 0 };
          } else if (name === "stream_chunk") {
            if (!streaming) streaming = { seq: parley.seq, el: add("msg bot", () => {}), chunks: 0 };
            streaming.el.textContent += arg.text;
            streaming.chunks += 1;
            log.scrollTop = log.scrollHeight;
          } else if (name === "stream_end") {
            /* the final message follows */
          } else if (name === "bot_uttered") {
            const m = arg || {};
            typing(false);
            if (streaming && m.text && (parley.seq === undefined || parley.seq === streaming.seq)) {
              streaming.el.textContent = m.text;   // the final text replaces the streamed one
              const rest = Object.assign({}, m); delete rest.text;
              streaming = null;
              showBot(rest);
            } else {
              showBot(m);
            }
            seen(parley.seq);
          } else if (name === "typing_on") {
            typing(true);
          } else if (name === "typing_off") {
            typing(false);
          } else if (name === "parley_error") {
            add("note", el => el.textContent = "Not sent: " + (arg && arg.message));
          }
        }

        async function loadHistory() {
          // Works when the conversation API answers this page (a server on loopback, or a session token);
          // otherwise the chat starts without the history. Bot messages carry their number: the page resumes
          // after the last one it shows.
          try {
            const r = await fetch("/conversations/" + encodeURIComponent(sessionId) + "/messages");
            if (!r.ok) return;
            const body = await r.json();
            const messages = Array.isArray(body) ? body : (body.messages || []);
            for (const m of messages) {
              if (m.sender === "user") showUser(m.text || "");
              else { showBot(m.response || m); seen(m.seq); }
            }
            if (messages.length) add("note", el => el.textContent = "— earlier messages above —");
          } catch (e) { /* no history */ }
        }

        function webSocketTransport(onFail) {
          const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + PATH + "?EIO=4&transport=websocket");
          let opened = false;
          const t = { name: "websocket", send: p => ws.send(p) };
          ws.onopen = () => { opened = true; };
          ws.onmessage = e => onPacket(e.data);
          ws.onclose = () => { if (!opened) onFail(); else { statusEl.textContent = "disconnected – reconnecting…"; setTimeout(connect, 1000); } };
          window.parleyDropConnection = () => ws.close();   // what a lost network looks like (for trying it out)
          return t;
        }

        function pollingTransport() {
          let sid = null, sending = Promise.resolve();
          const base = PATH + "?EIO=4&transport=polling";
          const t = { name: "polling", send: p => { sending = sending.then(() => fetch(base + "&sid=" + sid, { method: "POST", body: p })); } };
          (async () => {
            try {
              const open = await (await fetch(base)).text();
              sid = JSON.parse(open.slice(1)).sid;
              onPacket(open);
              for (;;) {
                const r = await fetch(base + "&sid=" + sid + "&t=" + Date.now());
                if (!r.ok) throw new Error("poll " + r.status);
                for (const p of (await r.text()).split("\x1e")) onPacket(p);
              }
            } catch (e) { statusEl.textContent = "disconnected – reconnecting…"; setTimeout(connect, 1000); }
          })();
          return t;
        }

        function connect() {
          statusEl.textContent = "connecting…";
          // ?transport=polling skips the WebSocket (for networks that block it, and for testing the fallback).
          if (new URLSearchParams(location.search).get("transport") === "polling") transport = pollingTransport();
          else transport = webSocketTransport(() => { transport = pollingTransport(); });
        }

        document.getElementById("form").onsubmit = e => {
          e.preventDefault();
          const input = document.getElementById("text");
          const text = input.value.trim();
          if (text) say(text);
          input.value = "";
        };
        // History first (when the API answers), then the socket resumes after the last message shown.
        (sessionId ? loadHistory() : Promise.resolve()).then(connect);
        </script>
        </body>
        </html>
        """#
}
