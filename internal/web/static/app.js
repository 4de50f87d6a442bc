// phonehome's UI script. Flows are hostile input: everything taken from
// them is put in the page as text (textContent), never as markup.
"use strict";
(function () {
  const body = document.body;
  const session = body.dataset.session;
  const isLive = body.dataset.live === "true";
  const switches = body.dataset.switches === "true";
  const q = (s) => document.querySelector(s);
  const el = (tag, text, cls) => {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  };
  const api = async (method, url, data) => {
    const opts = { method: method, headers: {}, credentials: "same-origin" };
    if (data !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(data);
    }
    const r = await fetch(url, opts);
    const j = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(j.error || r.statusText);
    return j;
  };

  // ---- switches: any button.switch posts its rule
  const ruleOf = (b) => {
    const r = {};
    for (const k of ["action", "host", "owner", "category", "kind", "device", "method", "path"]) {
      if (b.dataset[k]) r[k] = b.dataset[k];
    }
    return r;
  };
  document.addEventListener("click", async (ev) => {
    const b = ev.target.closest("button.switch");
    if (!b) return;
    ev.preventDefault();
    b.disabled = true;
    try {
      await api("POST", "/api/rules", ruleOf(b));
      b.textContent = "✓ " + b.textContent;
      b.classList.add("done");
      loadRules();
    } catch (e) {
      alert("The rule was not put in force: " + e.message);
      b.disabled = false;
    }
  });
  const rulesList = q("#rules");
  async function loadRules() {
    if (!rulesList || !switches) return;
    let doc;
    try { doc = await api("GET", "/api/rules"); } catch (e) { return; }
    rulesList.replaceChildren();
    for (const r of doc.rules) {
      const li = el("li");
      li.append(el("code", r.text), " ", el("span", r.stopped + " stopped since", "hint"), " ");
      const rm = el("button", "remove");
      rm.type = "button";
      rm.addEventListener("click", async () => { await api("DELETE", "/api/rules/" + r.id); loadRules(); });
      li.append(rm);
      rulesList.append(li);
    }
    for (const t of doc.command_line) rulesList.append(el("li", t + " (command line)", "hint"));
    if (!rulesList.children.length) rulesList.append(el("li", "none yet: the block, redact and allow buttons add them", "hint"));
  }
  loadRules();
  if (rulesList) setInterval(loadRules, 3000);

  // ---- markers
  // ---- set-up page: a WireGuard peer, its QR code shown once
  const wf = q("#wg-form");
  if (wf) wf.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const p = await api("POST", "/api/wireguard/peers", { name: q("#wg-name").value });
      q("#wg-qr").src = p.qr_png;
      q("#wg-conf").textContent = p.conf;
      q("#wg-peer").hidden = false;
      q("#wg-said").textContent = "added " + p.name + ": scan the code with the WireGuard app";
    } catch (e) { q("#wg-said").textContent = "not added: " + e.message; }
  });

  const mf = q("#marker-form");
  if (mf) mf.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const m = await api("POST", "/api/markers", { label: q("#marker-label").value, note: q("#marker-note").value });
      q("#marker-said").textContent = "marked at " + new Date(m.time).toLocaleTimeString() + ": " + m.label;
      if (body.dataset.page === "markers") location.reload();
    } catch (e) { q("#marker-said").textContent = "not marked: " + e.message; }
  });

  // ---- the live list
  const tbody = q("#flows");
  if (!tbody) return;
  const params = new URLSearchParams(location.search);
  const fDevice = q("#f-device"), fParty = q("#f-party"), fKind = q("#f-kind");
  if (params.get("device")) fDevice.value = params.get("device");
  if (params.get("party")) fParty.value = params.get("party");
  if (params.get("kind")) fKind.value = params.get("kind");
  const seen = new Set(), rows = [];
  const lists = { device: new Set(), party: new Set(), kind: new Set() };
  const maxRows = 1000;
  let paused = false, held = [];
  const matches = (r) => (!fDevice.value || r.device === fDevice.value) &&
    (!fParty.value || r.party === fParty.value) &&
    (!fKind.value || (r.kinds || []).includes(fKind.value));
  const remember = (name, v) => {
    if (!v || lists[name].has(v)) return;
    lists[name].add(v);
    const o = document.createElement("option");
    o.value = v;
    q("#l-" + name).append(o);
  };
  function rowOf(r) {
    const tr = el("tr");
    tr.dataset.id = r.id;
    tr.dataset.host = r.host;
    tr.append(el("td", new Date(r.time).toLocaleTimeString()));
    tr.append(el("td", r.device));
    const dest = el("td");
    const a = el("a", r.host);
    a.href = "/flows/" + encodeURIComponent(r.id) + "?session=" + encodeURIComponent(session);
    dest.append(a);
    if (r.cleartext) dest.append(" ", el("span", "cleartext", "badge warn"));
    tr.append(dest);
    tr.append(el("td", r.owner ? r.owner + (r.category ? " (" + r.category + ")" : "") : ""));
    const req = el("td", (r.method || "") + " " + (r.url || ""));
    req.title = req.textContent;
    tr.append(req);
    tr.append(el("td", (r.kinds || []).join(", ")));
    tr.append(el("td", r.verdict + (r.rule ? ": " + r.rule : ""), "verdict-" + r.verdict));
    if (switches) {
      const td = el("td");
      const b = el("button", "block host", "switch");
      b.type = "button";
      b.dataset.action = "block";
      b.dataset.host = r.host;
      td.append(b);
      if (r.owner) {
        const o = el("button", "block " + r.owner, "switch");
        o.type = "button";
        o.dataset.action = "block";
        o.dataset.owner = r.owner;
        td.append(" ", o);
      }
      tr.append(td);
    }
    return tr;
  }
  function add(r, fresh) {
    if (seen.has(r.id)) return;
    seen.add(r.id);
    remember("device", r.device); remember("party", r.party);
    for (const k of r.kinds || []) remember("kind", k);
    rows.push(r);
    if (rows.length > maxRows * 2) rows.splice(0, rows.length - maxRows);
    if (!matches(r)) return;
    const tr = rowOf(r);
    if (fresh) tr.classList.add("new");
    tbody.prepend(tr);
    while (tbody.children.length > maxRows) tbody.lastChild.remove();
  }
  function redraw() {
    tbody.replaceChildren();
    const shown = rows.filter(matches).slice(-maxRows);
    for (const r of shown) tbody.prepend(rowOf(r));
  }
  for (const f of [fDevice, fParty, fKind]) f.addEventListener("input", redraw);
  const status = q("#status");
  const pause = q("#pause");
  if (pause) pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
    if (!paused) { for (const r of held) add(r, true); held = []; }
    status.textContent = paused ? "paused" : "live";
  });
  // fill lists the newest flows; after a reconnect it adds what the stream
  // missed, in order
  async function fill(again) {
    try {
      const page = await api("GET", "/api/flows?limit=500&session=" + encodeURIComponent(session));
      for (const r of page.flows.reverse()) add(r, false);
      if (again) { rows.sort((a, b) => a.id - b.id); redraw(); }
    } catch (e) { if (status) status.textContent = "could not list the flows: " + e.message; }
  }
  (async () => {
    await fill(false);
    if (!isLive) return;
    const es = new EventSource("/api/events");
    let opened = false;
    es.addEventListener("open", () => {
      status.textContent = paused ? "paused" : "live";
      if (opened) fill(true);
      opened = true;
    });
    es.addEventListener("error", () => { status.textContent = "reconnecting…"; });
    es.addEventListener("flow", (ev) => {
      const r = JSON.parse(ev.data);
      if (paused) { held.push(r); status.textContent = "paused, " + held.length + " waiting"; return; }
      add(r, true);
    });
    es.addEventListener("notice", (ev) => { status.textContent = JSON.parse(ev.data).text; });
    es.addEventListener("dropped", () => { status.textContent = "fell behind; catching up"; });
  })();
})();
