// tradestore dashboard: a single page over the REST API (/api/v1), no build step.
// Tokens live in sessionStorage (gone when the tab closes); every value from the API is
// put on the page with textContent, never as HTML.
"use strict";

(function () {
  const API = "/api/v1";
  const TIMEFRAMES = ["1m", "5m", "15m", "1h", "4h", "1d"];
  const OVERLAYS = [
    { key: "ma_20", label: "MA 20", color: "#f5a623" },
    { key: "ema_50", label: "EMA 50", color: "#7b61ff" },
    { key: "bollinger", label: "Bollinger", color: "#4a90d9",
      names: ["bollinger_upper", "bollinger_middle", "bollinger_lower"] },
    { key: "vwap", label: "VWAP", color: "#2bb673" },
  ];
  const state = {
    timeframe: sessionStorage.getItem("ts.timeframe") || "1h",
    overlays: new Set(["ma_20", "bollinger"]),
    chart: null, candles: null, lines: {},
    equityChart: null, equity: null,
  };
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ API
  const tokens = {
    get access() { return sessionStorage.getItem("ts.access"); },
    get refresh() { return sessionStorage.getItem("ts.refresh"); },
    set(t) {
      sessionStorage.setItem("ts.access", t.access_token);
      sessionStorage.setItem("ts.refresh", t.refresh_token);
      sessionStorage.setItem("ts.user", JSON.stringify(t.user));
    },
    clear() { ["ts.access", "ts.refresh", "ts.user"].forEach((k) => sessionStorage.removeItem(k)); },
  };

  class ApiError extends Error {
    constructor(status, body) {
      const e = (body && body.error) || {};
      super(e.message || "HTTP " + status);
      this.status = status; this.field = e.field; this.rule = e.rule;
    }
  }

  let refreshing = null;
  async function refreshTokens() {
    if (!tokens.refresh) return false;
    refreshing = refreshing || fetch(API + "/auth/refresh", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: tokens.refresh }),
    }).then(async (r) => {
      if (!r.ok) return false;
      tokens.set(await r.json());
      return true;
    }).finally(() => { refreshing = null; });
    return refreshing;
  }

  async function api(path, options = {}, retried = false) {
    const headers = Object.assign({ Accept: "application/json" }, options.headers || {});
    if (tokens.access) headers.Authorization = "Bearer " + tokens.access;
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(API + path, {
      method: options.method || "GET", headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
    if (response.status === 401 && !retried && !path.startsWith("/auth/")) {
      if (await refreshTokens()) return api(path, options, true);
      showLogin("Your session ended; please log in again.");
      throw new ApiError(401, null);
    }
    const body = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  // ------------------------------------------------------------------ helpers
  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function num(value, digits = 2) {
    if (value === null || value === undefined) return "—";
    const n = Number(value);
    if (!Number.isFinite(n)) return String(value);
    return n.toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }
  function qty(value) {
    return value === null || value === undefined ? "—" : String(Number(value));
  }
  function pct(value, scale = 100) {
    if (value === null || value === undefined) return "—";
    return (Number(value) * scale).toFixed(2) + "%";
  }
  function time(value) {
    return value ? new Date(value).toISOString().replace("T", " ").slice(0, 19) : "—";
  }
  function sign(cell, value) {
    const n = Number(value);
    if (n > 0) cell.classList.add("up"); else if (n < 0) cell.classList.add("down");
    return cell;
  }
  function row(cells) {
    const tr = document.createElement("tr");
    cells.forEach((c) => tr.appendChild(c instanceof Node ? c : el("td", c)));
    return tr;
  }
  function numCell(text, value) {
    const td = el("td", text, "num");
    return value === undefined ? td : sign(td, value);
  }
  function fill(table, rows, empty) {
    const body = $(table).querySelector("tbody");
    body.replaceChildren(...rows);
    if (!rows.length) {
      const tr = row([]);
      const td = el("td", empty, "muted");
      td.colSpan = $(table).querySelectorAll("th").length;
      tr.appendChild(td);
      body.appendChild(tr);
    }
  }
  function banner(message) {
    $("banner").textContent = message || "";
    $("banner").hidden = !message;
  }
  function guarded(fn) {
    return (...args) => fn(...args).catch((err) => {
      if (err.status !== 401) banner(err.message);
    });
  }
  const epoch = (iso) => Math.floor(new Date(iso).getTime() / 1000);

  // ------------------------------------------------------------------ views
  function showLogin(message) {
    tokens.clear();
    $("app-view").hidden = true;
    $("session").hidden = true;
    $("login-view").hidden = false;
    $("login-error").textContent = message || "";
  }

  async function showApp() {
    const user = JSON.parse(sessionStorage.getItem("ts.user") || "{}");
    $("who").textContent = (user.username || "") + (user.role ? " (" + user.role + ")" : "");
    $("login-view").hidden = true;
    $("session").hidden = false;
    $("app-view").hidden = false;
    banner("");
    ensureCharts();
    await loadSymbols();
    await Promise.all([loadPortfolio(), loadPositions(), loadOrders(), loadFills(),
                       loadAlerts(), loadBacktests(), loadChart()]);
  }

  const loadPortfolio = guarded(async () => {
    const data = await api("/portfolio");
    const tiles = data.accounts.map((a) => {
      const box = el("div", null, "tile");
      box.dataset.testid = "account-" + a.account_id;
      box.appendChild(el("h3", a.account_name + " · " + a.base_currency));
      const dl = el("dl");
      [["Total value", num(a.total_value), null, "total-value"],
       ["Available", num(a.available_balance)],
       ["Invested", num(a.invested_balance)],
       ["Current value", num(a.current_value)],
       ["Unrealized PnL", num(a.unrealized_pnl), a.unrealized_pnl],
       ["Realized PnL", num(a.realized_pnl), a.realized_pnl],
       ["Total PnL", num(a.total_pnl), a.total_pnl, "total-pnl"],
       ["Return", a.return_pct === null ? "—" : Number(a.return_pct).toFixed(2) + "%", a.return_pct],
      ].forEach(([label, text, value, testid]) => {
        dl.appendChild(el("dt", label));
        const dd = el("dd", text);
        if (value !== undefined && value !== null) sign(dd, value);
        if (testid) dd.dataset.testid = testid;
        dl.appendChild(dd);
      });
      box.appendChild(dl);
      return box;
    });
    $("portfolio").replaceChildren(...tiles);
    if (!tiles.length) $("portfolio").appendChild(el("p", "No accounts yet.", "muted"));
  });

  const loadPositions = guarded(async () => {
    const rows = (await api("/positions")).map((p) => row([
      p.symbol, p.side, numCell(qty(p.quantity)), numCell(num(p.avg_entry_price)),
      numCell(num(p.current_price)), numCell(num(p.market_value)),
      numCell(num(p.unrealized_pnl), p.unrealized_pnl),
    ]));
    fill("positions", rows, "No open positions.");
  });

  const loadOrders = guarded(async () => {
    const page = await api("/orders?status=active&limit=50");
    const rows = page.items.map((o) => {
      const cancel = el("button", "Cancel", "small");
      cancel.type = "button";
      cancel.addEventListener("click", guarded(async () => {
        cancel.disabled = true;
        await api("/orders/" + o.id + "/cancel", { method: "POST" });
        await Promise.all([loadOrders(), loadPortfolio()]);
      }));
      const action = el("td"); action.appendChild(cancel);
      const tr = row([o.symbol, o.side, o.order_type, numCell(qty(o.quantity)),
                      numCell(num(o.price)), o.status, time(o.created_at), action]);
      tr.dataset.orderId = o.id;
      return tr;
    });
    fill("orders", rows, "No open orders.");
  });

  const loadFills = guarded(async () => {
    const page = await api("/fills?limit=20");
    fill("fills", page.items.map((f) => row([
      time(f.executed_at), f.symbol, f.side, numCell(qty(f.quantity)), numCell(num(f.price)),
      numCell(num(f.fee, 4)),
    ])), "No fills yet.");
  });

  const loadAlerts = guarded(async () => {
    const page = await api("/alerts?status=open&limit=50");
    const items = page.items.map((a) => {
      const li = el("li", null, "alert sev-" + String(a.severity || "").toLowerCase());
      li.dataset.alertId = a.alert_id;
      li.appendChild(el("span", a.severity || "", "badge"));
      li.appendChild(el("span", a.message, "message"));
      li.appendChild(el("span", time(a.created_at), "muted"));
      if (a.user_id !== null) {
        const ack = el("button", "Acknowledge", "small");
        ack.type = "button";
        ack.dataset.testid = "ack-" + a.alert_id;
        ack.addEventListener("click", guarded(async () => {
          ack.disabled = true;
          await api("/alerts/" + a.alert_id + "/acknowledge", { method: "POST" });
          await loadAlerts();
        }));
        li.appendChild(ack);
      } else {
        li.appendChild(el("span", "system", "muted"));
      }
      return li;
    });
    $("alerts").replaceChildren(...items);
    if (!items.length) $("alerts").appendChild(el("li", "No open alerts.", "muted"));
  });

  const loadBacktests = guarded(async () => {
    const page = await api("/backtests?limit=20");
    const rows = page.items.map((b) => {
      const tr = row([
        "#" + b.id, b.strategy_name, b.status, numCell(pct(b.total_return), b.total_return),
        numCell(b.sharpe_ratio === null ? "—" : Number(b.sharpe_ratio).toFixed(2)),
        numCell(pct(b.max_drawdown)), numCell(b.total_trades === null ? "—" : b.total_trades),
      ]);
      tr.classList.add("clickable");
      tr.dataset.testid = "backtest-" + b.id;
      tr.addEventListener("click", guarded(() => showEquity(b.id)));
      return tr;
    });
    fill("backtests", rows, "No backtests yet.");
    if (page.items.length) await showEquity(page.items[0].id);
  });

  async function showEquity(runId) {
    const run = await api("/backtests/" + runId);
    const points = (run.equity_curve || [])
      .map((p) => ({ time: epoch(p.t), value: Number(p.equity) }))
      .filter((p) => Number.isFinite(p.time) && Number.isFinite(p.value));
    $("equity-title").textContent = "Run #" + run.id + " · " + run.strategy_name + " · " +
      points.length + " points · return " + pct(run.total_return);
    if (state.equity) state.equity.setData(points);
    if (state.equityChart) state.equityChart.timeScale().fitContent();
  }

  // ------------------------------------------------------------------ chart
  function ensureCharts() {
    if (state.chart || !window.LightweightCharts) return;
    const LC = window.LightweightCharts;
    const options = {
      autoSize: true,
      layout: { background: { color: "#ffffff" }, textColor: "#333", attributionLogo: false },
      grid: { vertLines: { color: "#f0f0f0" }, horzLines: { color: "#f0f0f0" } },
      timeScale: { timeVisible: true, secondsVisible: false },
      rightPriceScale: { borderVisible: false },
    };
    state.chart = LC.createChart($("chart"), options);
    state.candles = state.chart.addCandlestickSeries({
      upColor: "#26a69a", downColor: "#ef5350", wickUpColor: "#26a69a",
      wickDownColor: "#ef5350", borderVisible: false,
    });
    state.equityChart = LC.createChart($("equity-chart"), options);
    state.equity = state.equityChart.addAreaSeries({
      lineColor: "#4a90d9", topColor: "rgba(74,144,217,0.3)", bottomColor: "rgba(74,144,217,0.02)",
    });
  }

  function buildControls() {
    const group = $("timeframes");
    TIMEFRAMES.forEach((tf) => {
      const b = el("button", tf);
      b.type = "button";
      b.dataset.timeframe = tf;
      b.dataset.testid = "tf-" + tf;
      b.addEventListener("click", () => {
        state.timeframe = tf;
        sessionStorage.setItem("ts.timeframe", tf);
        loadChart();
      });
      group.appendChild(b);
    });
    OVERLAYS.forEach((o) => {
      const label = el("label", null, "check");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = state.overlays.has(o.key);
      box.dataset.testid = "overlay-" + o.key;
      box.addEventListener("change", () => {
        if (box.checked) state.overlays.add(o.key); else state.overlays.delete(o.key);
        loadChart();
      });
      label.appendChild(box);
      label.appendChild(document.createTextNode(" " + o.label));
      $("overlays").appendChild(label);
    });
    $("symbol").addEventListener("change", () => loadChart());
  }

  async function loadSymbols() {
    const select = $("symbol");
    if (select.options.length) return;
    const listings = await api("/market/listings?limit=200").catch(() => []);
    listings.forEach((l) => {
      const option = el("option", l.symbol);
      option.value = l.symbol;
      select.appendChild(option);
    });
  }

  let chartRequest = 0;
  const loadChart = guarded(async () => {
    const symbol = $("symbol").value;
    document.querySelectorAll("#timeframes button").forEach((b) => {
      b.classList.toggle("active", b.dataset.timeframe === state.timeframe);
      b.setAttribute("aria-pressed", String(b.dataset.timeframe === state.timeframe));
    });
    if (!symbol || !state.chart) return;
    const mine = ++chartRequest;
    $("chart-status").textContent = "loading…";
    const query = "symbol=" + encodeURIComponent(symbol) + "&timeframe=" +
      encodeURIComponent(state.timeframe) + "&limit=300";
    const names = OVERLAYS.filter((o) => state.overlays.has(o.key))
      .flatMap((o) => o.names || [o.key]);
    const [bars, ind] = await Promise.all([
      api("/market/candles?" + query),
      names.length ? api("/market/indicators?" + query + "&names=" + names.join(","))
                   : Promise.resolve(null),
    ]);
    if (mine !== chartRequest) return; // a newer switch won
    state.candles.setData(bars.candles.map((c) => ({
      time: epoch(c.time), open: Number(c.open), high: Number(c.high),
      low: Number(c.low), close: Number(c.close),
    })));
    Object.values(state.lines).forEach((s) => state.chart.removeSeries(s));
    state.lines = {};
    if (ind) {
      OVERLAYS.filter((o) => state.overlays.has(o.key)).forEach((o) => {
        (o.names || [o.key]).forEach((name) => {
          const series = state.chart.addLineSeries({
            color: o.color, lineWidth: name.endsWith("middle") ? 1 : 2,
            priceLineVisible: false, lastValueVisible: false,
          });
          series.setData(ind.rows.filter((r) => r[name] !== null)
            .map((r) => ({ time: epoch(r.time), value: r[name] })));
          state.lines[name] = series;
        });
      });
    }
    state.chart.timeScale().fitContent();
    const chart = $("chart");
    chart.dataset.timeframe = state.timeframe;
    chart.dataset.symbol = symbol;
    chart.dataset.bars = String(bars.candles.length);
    chart.dataset.overlays = Object.keys(state.lines).join(",");
    $("chart-status").textContent = symbol + " · " + state.timeframe + " · " +
      bars.candles.length + " bars" + (ind ? " · indicators " + ind.source : "");
  });

  // ------------------------------------------------------------------ wiring
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("login-error").textContent = "";
    try {
      const t = await api("/auth/login", {
        method: "POST",
        body: { username: $("username").value, password: $("password").value },
      });
      tokens.set(t);
      $("password").value = "";
      await showApp();
    } catch (err) {
      $("login-error").textContent = err.status === 429
        ? "Too many attempts; wait a moment." : err.message;
    }
  });
  $("logout").addEventListener("click", async () => {
    try { await api("/auth/logout", { method: "POST" }); } catch (err) { /* ended anyway */ }
    showLogin("Logged out.");
  });
  $("refresh-all").addEventListener("click", () => showApp());

  buildControls();
  if (tokens.access) showApp(); else showLogin();
})();
