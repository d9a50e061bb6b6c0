// The chat page's behaviour: settings, safe markdown rendering of model text, the /ws connection
// with reconnect, and the conversation. No framework and no build step; served as is by eyrie.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);

  // ---- Settings -----------------------------------------------------------------------------

  const DEFAULTS = {
    system: '', temperature: 0.7, top_p: 0.95, top_k: 50, max_new_tokens: 256,
    repetition_penalty: 1, stop: '',
  };
  const FIELDS = {
    system: 'system-prompt', temperature: 'temperature', top_p: 'top-p', top_k: 'top-k',
    max_new_tokens: 'max-new-tokens', repetition_penalty: 'repetition-penalty', stop: 'stop-sequences',
  };
  const STORE_KEY = 'eyrie.settings';

  function loadSettings() {
    let saved = {};
    try { saved = JSON.parse(localStorage.getItem(STORE_KEY) || '{}') || {}; } catch { saved = {}; }
    for (const [key, id] of Object.entries(FIELDS)) {
      const v = key in saved ? saved[key] : DEFAULTS[key];
      $(id).value = String(v);
    }
  }

  function saveSettings() {
    const out = {};
    for (const [key, id] of Object.entries(FIELDS)) out[key] = $(id).value;
    try { localStorage.setItem(STORE_KEY, JSON.stringify(out)); } catch { /* private mode: keep going */ }
  }

  function numberField(id, fallback) {
    const v = Number.parseFloat($(id).value);
    return Number.isFinite(v) ? v : fallback;
  }

  // TGI parameters. Temperature 0 is greedy on the server, and warpers would turn sampling back
  // on, so they are only sent when sampling.
  function parameters() {
    const p = { max_new_tokens: Math.max(1, Math.round(numberField('max-new-tokens', DEFAULTS.max_new_tokens))) };
    const temperature = Math.max(0, numberField('temperature', DEFAULTS.temperature));
    p.temperature = temperature;
    if (temperature > 0) {
      p.do_sample = true;
      const topP = numberField('top-p', 1);
      if (topP > 0 && topP < 1) p.top_p = topP;
      const topK = Math.round(numberField('top-k', 0));
      if (topK > 0) p.top_k = topK;
    }
    const rep = numberField('repetition-penalty', 1);
    if (rep > 0 && rep !== 1) p.repetition_penalty = rep;
    const stop = $('stop-sequences').value.split('\n').filter((s) => s.length > 0).slice(0, 8);
    if (stop.length) p.stop = stop;
    return p;
  }

  // ---- Safe markdown ------------------------------------------------------------------------
  // Model and user text is untrusted. Everything is built with createElement / text nodes, so
  // no string ever reaches the HTML parser; only http(s) links survive.

  function el(tag, className) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    return e;
  }

  function safeUrl(raw) {
    try {
      const u = new URL(raw);
      return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
    } catch {
      return null;
    }
  }

  function link(href, parent) {
    const a = el('a');
    a.href = href;
    a.rel = 'noopener noreferrer';
    a.target = '_blank';
    parent.append(a);
    return a;
  }

  const LINK_RE = /\[([^\]\n]+)\]\(([^)\s]+)\)/y;
  const URL_RE = /https?:\/\/[^\s<>"'`)\]]+/y;

  function renderInline(text, parent) {
    let buf = '';
    const flush = () => { if (buf) { parent.append(document.createTextNode(buf)); buf = ''; } };
    let i = 0;
    while (i < text.length) {
      const c = text[i];
      if (c === '`') {
        const end = text.indexOf('`', i + 1);
        if (end > i + 1) {
          flush();
          parent.append(Object.assign(el('code'), { textContent: text.slice(i + 1, end) }));
          i = end + 1;
          continue;
        }
      } else if (c === '*' && text[i + 1] === '*') {
        const end = text.indexOf('**', i + 2);
        if (end > i + 2) {
          flush();
          const strong = el('strong');
          renderInline(text.slice(i + 2, end), strong);
          parent.append(strong);
          i = end + 2;
          continue;
        }
      } else if (c === '*' && text[i + 1] !== ' ') {
        const end = text.indexOf('*', i + 1);
        if (end > i + 1 && text[end - 1] !== ' ') {
          flush();
          const em = el('em');
          renderInline(text.slice(i + 1, end), em);
          parent.append(em);
          i = end + 1;
          continue;
        }
      } else if (c === '[') {
        LINK_RE.lastIndex = i;
        const m = LINK_RE.exec(text);
        const href = m && safeUrl(m[2]);
        if (href) {
          flush();
          renderInline(m[1], link(href, parent));
          i = LINK_RE.lastIndex;
          continue;
        }
      } else if (c === 'h' && (i === 0 || /[\s(]/.test(text[i - 1]))) {
        URL_RE.lastIndex = i;
        const m = URL_RE.exec(text);
        const href = m && safeUrl(m[0]);
        if (href) {
          flush();
          link(href, parent).textContent = m[0];
          i = URL_RE.lastIndex;
          continue;
        }
      }
      buf += c;
      i += 1;
    }
    flush();
  }

  const FENCE_RE = /^\s*```/;
  const BULLET_RE = /^\s*[-*+]\s+(.*)$/;
  const ORDERED_RE = /^\s*\d{1,9}[.)]\s+(.*)$/;

  // Blocks: fenced code (an unclosed fence while streaming runs to the end), lists, paragraphs
  // with their single line breaks kept.
  function renderMarkdown(text, container) {
    container.replaceChildren();
    const lines = text.split('\n');
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      if (FENCE_RE.test(line)) {
        const lang = line.trim().slice(3).trim();
        const body = [];
        i += 1;
        while (i < lines.length && !FENCE_RE.test(lines[i])) body.push(lines[i++]);
        i += 1;  // the closing fence
        const pre = el('pre');
        const code = el('code');
        if (/^[\w+-]{1,20}$/.test(lang)) code.dataset.lang = lang;
        code.textContent = body.join('\n');
        pre.append(code);
        container.append(pre);
        continue;
      }
      const bullet = BULLET_RE.test(line), ordered = !bullet && ORDERED_RE.test(line);
      if (bullet || ordered) {
        const re = bullet ? BULLET_RE : ORDERED_RE;
        const list = el(bullet ? 'ul' : 'ol');
        while (i < lines.length && re.test(lines[i])) {
          const li = el('li');
          renderInline(re.exec(lines[i])[1], li);
          list.append(li);
          i += 1;
        }
        container.append(list);
        continue;
      }
      if (line.trim() === '') { i += 1; continue; }
      const p = el('p');
      let first = true;
      while (i < lines.length && lines[i].trim() !== '' && !FENCE_RE.test(lines[i]) &&
             !BULLET_RE.test(lines[i]) && !ORDERED_RE.test(lines[i])) {
        if (!first) p.append(el('br'));
        renderInline(lines[i], p);
        first = false;
        i += 1;
      }
      container.append(p);
    }
  }

  // ---- Conversation view --------------------------------------------------------------------

  const log = $('log');
  const messages = [];  // {role, content, view, meta, done}
  let pending = null;   // the assistant message being generated
  let requestSeq = 0;

  function addMessage(role, content) {
    $('empty-hint').hidden = true;
    const view = $('message-template').content.firstElementChild.cloneNode(true);
    view.classList.add(role);
    view.querySelector('.msg-role').textContent = role === 'user' ? 'You' : 'Model';
    const msg = {
      role, content, view, body: view.querySelector('.msg-body'), meta: view.querySelector('.msg-meta'),
    };
    if (role === 'user') msg.body.textContent = content;  // user text shown exactly as typed
    else renderMarkdown(content, msg.body);
    log.append(view);
    messages.push(msg);
    scrollToEnd();
    return msg;
  }

  function scrollToEnd() {
    const nearEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 120;
    if (nearEnd || pending) log.scrollTop = log.scrollHeight;
  }

  // Token text arrives faster than frames: render at most once per animation frame.
  function scheduleRender(msg) {
    if (msg.frame) return;
    msg.frame = requestAnimationFrame(() => {
      msg.frame = 0;
      renderMarkdown(msg.content, msg.body);
      scrollToEnd();
    });
  }

  function setMeta(msg, parts, state) {
    msg.meta.textContent = parts.filter(Boolean).join(' · ');
    msg.view.dataset.state = state;
  }

  function updateButtons() {
    const busy = Boolean(pending);
    $('send').disabled = busy;
    $('stop').disabled = !busy;
    $('regenerate').disabled = busy || !messages.some((m) => m.role === 'user');
  }

  // ---- Generation ---------------------------------------------------------------------------

  function conversation(upTo) {
    const out = [];
    const system = $('system-prompt').value.trim();
    if (system) out.push({ role: 'system', content: system });
    for (const m of messages.slice(0, upTo)) {
      if (m.role === 'assistant' && !m.content) continue;
      out.push({ role: m.role, content: m.content });
    }
    return out;
  }

  function startReply() {
    const history = conversation(messages.length);
    const msg = addMessage('assistant', '');
    msg.id = `r${Date.now().toString(36)}-${++requestSeq}`;
    msg.sent = performance.now();
    msg.tokens = 0;
    pending = msg;
    setMeta(msg, ['waiting for the first token…'], 'streaming');
    msg.view.setAttribute('aria-busy', 'true');
    updateButtons();
    const frame = { type: 'generate', id: msg.id, messages: history, parameters: parameters() };
    if (!connection.send(frame)) finishLocally(msg, 'not connected: the reply will not arrive');
  }

  function send() {
    const text = $('prompt').value;
    if (!text.trim() || pending) return;
    $('prompt').value = '';
    addMessage('user', text);
    startReply();
  }

  function regenerate() {
    if (pending) return;
    while (messages.length && messages[messages.length - 1].role === 'assistant') messages.pop().view.remove();
    if (!messages.length) return updateButtons();
    startReply();
  }

  function stop() {
    if (!pending) return;
    const msg = pending;
    setMeta(msg, ['stopping…'], 'streaming');
    if (!connection.send({ type: 'cancel', id: msg.id })) finishLocally(msg, 'cancelled (connection lost)');
  }

  function newChat() {
    if (pending) stop();
    pending = null;
    for (const m of messages) m.view.remove();
    messages.length = 0;
    $('empty-hint').hidden = false;
    updateButtons();
    $('prompt').focus();
  }

  function finishLocally(msg, why) {
    if (pending !== msg) return;
    pending = null;
    msg.view.removeAttribute('aria-busy');
    msg.view.dataset.finish = 'error';
    setMeta(msg, [why], 'error');
    updateButtons();
  }

  function onToken(msg, frame) {
    if (msg.tokens === 0) msg.firstToken = performance.now();
    msg.tokens += 1;
    msg.content += frame.token && typeof frame.token.text === 'string' ? frame.token.text : '';
    const ttft = msg.firstToken - msg.sent;
    setMeta(msg, [`${msg.tokens} tokens`, `first token ${ttft.toFixed(0)} ms`], 'streaming');
    scheduleRender(msg);
  }

  function fmt(n, digits) { return Number.isFinite(n) ? n.toFixed(digits) : '?'; }

  function onDone(msg, frame) {
    if (typeof frame.generated_text === 'string') msg.content = frame.generated_text;
    if (msg.frame) { cancelAnimationFrame(msg.frame); msg.frame = 0; }
    renderMarkdown(msg.content, msg.body);
    const usage = frame.usage || {}, timing = frame.timing || {};
    const n = usage.completion_tokens ?? msg.tokens;
    // Decode speed from the server's own time per output token; the wall clock when it has none.
    let rate = timing.tpot_ms > 0 ? 1000 / timing.tpot_ms : NaN;
    if (!Number.isFinite(rate) && msg.firstToken && n > 1)
      rate = (n - 1) / ((performance.now() - msg.firstToken) / 1000);
    const reason = String(frame.finish_reason || 'unknown');
    msg.view.dataset.finish = reason;
    msg.view.removeAttribute('aria-busy');
    setMeta(msg, [
      `finish: ${reason}`,
      `${n} tokens`,
      Number.isFinite(rate) ? `${fmt(rate, 1)} tokens/s` : null,
      timing.ttft_ms != null ? `first token ${fmt(timing.ttft_ms, 0)} ms` : null,
    ], 'done');
    pending = null;
    updateButtons();
    scrollToEnd();
  }

  function onError(msg, frame) {
    const text = `${frame.error_type || 'error'}: ${frame.message || frame.error || 'request failed'}`;
    if (msg) finishLocally(msg, text);
    else showNotice(text);
  }

  function onFrame(frame) {
    const msg = pending && frame.id === pending.id ? pending : null;
    if (frame.type === 'error') return onError(msg, frame);
    if (!msg) return;  // a reply that was abandoned (new chat) still streams in; ignore it
    if (frame.type === 'token') onToken(msg, frame);
    else if (frame.type === 'done') onDone(msg, frame);
  }

  function showNotice(text) {
    const p = el('p', 'notice');
    p.textContent = text;
    log.append(p);
    scrollToEnd();
  }

  // ---- Connection ---------------------------------------------------------------------------

  // The /ws socket, reopened with exponential backoff (0.5 s doubling to 10 s, with jitter) so a
  // restarted server is found again without a page reload.
  const connection = {
    socket: null,
    delay: 500,
    timer: 0,

    url() {
      return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
    },

    open() {
      clearTimeout(this.timer);
      setConn('connecting', 'connecting…');
      let socket;
      try {
        socket = new WebSocket(this.url());
      } catch {
        return this.retry();
      }
      this.socket = socket;
      socket.addEventListener('open', () => {
        this.delay = 500;
        setConn('open', 'connected');
        refreshHealth();
      });
      socket.addEventListener('message', (ev) => {
        let frame;
        try { frame = JSON.parse(ev.data); } catch { return; }
        if (frame && typeof frame === 'object') onFrame(frame);
      });
      socket.addEventListener('close', () => {
        if (this.socket !== socket) return;
        this.socket = null;
        // The server cancels a closed socket's requests, so a reply in flight is over.
        if (pending) finishLocally(pending, 'connection lost');
        this.retry();
      });
    },

    retry() {
      const wait = this.delay * (0.75 + Math.random() * 0.5);
      this.delay = Math.min(this.delay * 2, 10000);
      setConn('closed', `disconnected, retrying in ${Math.ceil(wait / 1000)} s`);
      this.timer = setTimeout(() => this.open(), wait);
    },

    send(frame) {
      if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
      this.socket.send(JSON.stringify(frame));
      return true;
    },
  };

  function setConn(state, text) {
    const b = $('conn-status');
    b.dataset.state = state;
    b.textContent = text;
  }

  // ---- Server status ------------------------------------------------------------------------

  async function refreshInfo() {
    try {
      const r = await fetch('/info', { cache: 'no-store' });
      if (!r.ok) throw new Error(String(r.status));
      const info = await r.json();
      const name = $('model-name');
      name.textContent = String(info.model_id || 'unknown model');
      name.title = [info.architecture, info.model_dtype, info.model_device_type].filter(Boolean).join(', ');
      document.title = `${name.textContent} · eyrie chat`;
    } catch {
      setTimeout(refreshInfo, 3000);
    }
  }

  async function refreshHealth() {
    const b = $('server-status');
    try {
      const r = await fetch('/health', { cache: 'no-store' });
      b.dataset.state = r.ok ? 'healthy' : 'loading';
      b.textContent = r.ok ? 'server: healthy' : 'server: loading';
    } catch {
      b.dataset.state = 'down';
      b.textContent = 'server: unreachable';
    }
  }

  // ---- Wiring -------------------------------------------------------------------------------

  function init() {
    loadSettings();
    for (const id of Object.values(FIELDS)) $(id).addEventListener('change', saveSettings);
    $('reset-settings').addEventListener('click', () => {
      try { localStorage.removeItem(STORE_KEY); } catch { /* nothing saved */ }
      loadSettings();
    });
    if (window.matchMedia('(min-width: 900px)').matches) $('settings').open = true;

    $('composer').addEventListener('submit', (ev) => { ev.preventDefault(); send(); });
    $('prompt').addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        send();
      }
    });
    $('stop').addEventListener('click', stop);
    $('regenerate').addEventListener('click', regenerate);
    $('new-chat').addEventListener('click', newChat);
    document.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && pending) stop();
    });

    updateButtons();
    refreshInfo();
    refreshHealth();
    setInterval(refreshHealth, 10000);
    connection.open();
    $('prompt').focus();
  }

  init();
})();
