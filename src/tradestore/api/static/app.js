// tradestore dashboard: a single page over the REST API (/api/v1), no build step.
// Tokens live in sessionStorage (gone when the tab closes); every value from the API is
// put on the page with textContent, never as HTML. Views are switched by the URL hash.
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
  const VIEWS = ["overview", "positions", "orders", "ledger", "backtests", "alerts",
                 "strategies", "runners", "research", "picks", "kpis"];
  const HORIZONS = [1, 5, 20]; // trading days of the pick outcomes
  const LIVE_REFRESH_MS = 10000; // positions and the overview re-read while shown
  // Currencies whose amounts read in cents; anything else (BTC, ETH, ...) gets 8 places.
  const CENTS = new Set(["USD", "USDT", "USDC", "BUSD", "EUR", "GBP", "KRW", "JPY", "TUSD", "DAI"]);
  const state = {
    timeframe: sessionStorage.getItem("ts.timeframe") || "1h",
    overlays: new Set(["ma_20", "bollinger"]),
    listings: new Map(), accounts: [],
    chart: null, candles: null, volume: null, lines: {},
    equityChart: null, equity: null, ddChart: null, drawdown: null,
    view: null, run: null, runMarkers: null, window: null, timer: null,
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
      this.status = status; this.code = e.code; this.field = e.field; this.rule = e.rule;
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
      showLogin("Your session ended; please log in again.", true);
      throw new ApiError(401, null);
    }
    const body = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  // ------------------------------------------------------------------ formatting
  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  // Decimal places of an increment given as a decimal string ("0.00000100" -> 6, "1e-8" -> 8).
  function placesOf(step) {
    if (step === null || step === undefined) return null;
    const n = Number(step);
    if (!(n > 0)) return null;
    if (n >= 1) return 0;
    let s = String(step).toLowerCase();
    if (s.includes("e")) s = n.toFixed(20);
    const frac = (s.split(".")[1] || "").replace(/0+$/, "");
    return Math.min(frac.length, 12);
  }
  // Places that show a price of this size with about 5 significant digits (no tick known).
  function placesFor(value) {
    const n = Math.abs(Number(value));
    if (!Number.isFinite(n) || n === 0) return 2;
    if (n >= 1000) return 2;
    return Math.min(12, Math.max(2, 4 - Math.floor(Math.log10(n))));
  }
  function fixed(value, places) {
    if (value === null || value === undefined || value === "") return "—";
    const n = Number(value);
    if (!Number.isFinite(n)) return String(value);
    return n.toLocaleString("en-US", { minimumFractionDigits: places, maximumFractionDigits: places });
  }
  // A price of a listing: as many places as its tick size, else as its size needs.
  function pricePlaces(symbol, sample) {
    const listing = state.listings.get(symbol);
    const p = listing ? placesOf(listing.tick_size) : null;
    return p === null ? placesFor(sample) : p;
  }
  function price(symbol, value) {
    return fixed(value, pricePlaces(symbol, value));
  }
  // Money in a currency: cents for fiat and stablecoins, else 8 places.
  function money(value, currency) {
    return fixed(value, CENTS.has(String(currency || "").toUpperCase()) ? 2 : 8);
  }
  // A quantity exactly as the API gave it, trailing zeros dropped.
  // (A float from a backtest's trade list is rounded to what its size needs instead.)
  function qty(value) {
    if (value === null || value === undefined) return "—";
    const s = String(value);
    if (typeof value === "number" || /e/i.test(s)) return fixed(value, placesFor(value) + 2);
    return s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s;
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
  function fill(table, rows, empty, append = false) {
    const body = $(table).querySelector("tbody");
    if (append) rows.forEach((r) => body.appendChild(r)); else body.replaceChildren(...rows);
    if (!body.children.length) {
      const tr = row([]);
      const td = el("td", empty, "muted empty");
      td.colSpan = $(table).querySelectorAll("th").length;
      tr.appendChild(td);
      body.appendChild(tr);
    }
  }
  function kv(target, pairs) {
    $(target).replaceChildren();
    pairs.forEach(([k, v]) => {
      $(target).appendChild(el("dt", k));
      $(target).appendChild(el("dd", v === null || v === undefined ? "—" : v));
    });
    if (!pairs.length) $(target).appendChild(el("dd", "none", "muted"));
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
  const accountName = (id) => {
    const a = state.accounts.find((x) => x.id === id);
    return a ? a.name + " #" + a.id : "#" + id;
  };

  // ------------------------------------------------------------------ session and views
  function showLogin(message, isError = false) {
    tokens.clear();
    stopTimer();
    $("app-view").hidden = true;
    $("session").hidden = true;
    $("nav").hidden = true;
    $("login-view").hidden = false;
    $("login-error").textContent = isError ? message || "" : "";
    $("login-note").textContent = isError ? "" : message || "";
  }

  function user() { return JSON.parse(sessionStorage.getItem("ts.user") || "{}"); }

  async function showApp() {
    const u = user();
    $("who").textContent = (u.username || "") + (u.role ? " (" + u.role + ")" : "");
    document.querySelectorAll("[data-admin]").forEach((a) => { a.hidden = u.role !== "admin"; });
    $("login-view").hidden = true;
    $("login-note").textContent = "";
    $("session").hidden = false;
    $("nav").hidden = false;
    $("app-view").hidden = false;
    banner("");
    await Promise.all([loadListings(), loadAccounts()]);
    await route();
  }

  function currentView() {
    const name = location.hash.replace(/^#\/?/, "");
    if (name === "kpis" && user().role !== "admin") return "overview";
    return VIEWS.includes(name) ? name : "overview";
  }

  const LOADERS = {
    overview: () => Promise.all([loadPortfolio(), loadChart()]),
    positions: () => loadPositions(),
    orders: () => Promise.all([loadOrders(), loadFills()]),
    ledger: () => loadLedgerView(),
    backtests: () => loadBacktests(),
    alerts: () => loadAlerts(),
    strategies: () => loadStrategies(),
    runners: () => loadRunners(),
    research: () => ($("research-q").value.trim() ? runSearch() : Promise.resolve()),
    picks: () => loadPickPerformance(),
    kpis: () => loadKpis(),
  };

  async function route() {
    if ($("app-view").hidden) return;
    const view = currentView();
    state.view = view;
    document.querySelectorAll(".view").forEach((v) => { v.hidden = v.dataset.view !== view; });
    document.querySelectorAll("#nav a").forEach((a) => {
      a.classList.toggle("active", a.dataset.view === view);
      if (a.dataset.view === view) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    });
    document.body.dataset.view = view;
    ensureCharts();
    startTimer();
    await LOADERS[view]();
    loadAlertCount();
  }

  function stopTimer() { if (state.timer) clearInterval(state.timer); state.timer = null; }
  function startTimer() {
    stopTimer();
    if (!["positions", "overview", "runners"].includes(state.view)) return;
    state.timer = setInterval(() => {
      if (document.hidden || $("app-view").hidden) return;
      if (state.view === "positions") loadPositions();
      else if (state.view === "runners") loadRunners();
      else if (state.view === "overview") loadPortfolio();
    }, LIVE_REFRESH_MS);
  }

  // ------------------------------------------------------------------ shared lookups
  async function loadListings() {
    if (state.listings.size) return;
    const listings = await api("/market/listings?limit=500").catch(() => []);
    const select = $("symbol");
    listings.forEach((l) => {
      state.listings.set(l.symbol, l);
      const option = el("option", l.symbol);
      option.value = l.symbol;
      select.appendChild(option);
    });
    const saved = sessionStorage.getItem("ts.symbol");
    if (saved && state.listings.has(saved)) select.value = saved;
  }

  async function loadAccounts() {
    state.accounts = await api("/accounts").catch(() => []);
    document.querySelectorAll(".account-select").forEach((select) => {
      const keep = select.value;
      const options = state.accounts.map((a) => {
        const o = el("option", a.name + " #" + a.id + " · " + a.base_currency);
        o.value = String(a.id);
        return o;
      });
      if (select.id === "orders-account") {
        const any = el("option", "all"); any.value = ""; options.unshift(any);
      }
      select.replaceChildren(...options);
      if (keep && [...select.options].some((o) => o.value === keep)) select.value = keep;
    });
  }

  // ------------------------------------------------------------------ overview
  const loadPortfolio = guarded(async () => {
    const data = await api("/portfolio");
    const [balances, positions] = await Promise.all([
      Promise.all(data.accounts.map(
        (a) => api("/accounts/" + a.account_id + "/balances").catch(() => null))),
      api("/positions").catch(() => []),
    ]);
    const tiles = data.accounts.map((a, i) => {
      const ccy = a.base_currency;
      const box = el("div", null, "tile");
      box.dataset.testid = "account-" + a.account_id;
      box.appendChild(el("h3", a.account_name + " · " + ccy));
      const dl = el("dl");
      [["Total value", money(a.total_value, ccy), null, "total-value"],
       ["Available", money(a.available_balance, ccy)],
       ["Invested", money(a.invested_balance, ccy)],
       ["Positions value", money(a.current_value, ccy)],
       ["Other currencies", money(a.other_value, ccy)],
       ["Unrealized PnL", money(a.unrealized_pnl, ccy), a.unrealized_pnl],
       ["Realized PnL", money(a.realized_pnl, ccy), a.realized_pnl],
       ["Total PnL", money(a.total_pnl, ccy), a.total_pnl, "total-pnl"],
       ["Return", a.return_pct === null ? "—" : Number(a.return_pct).toFixed(2) + "%", a.return_pct],
      ].forEach(([label, text, value, testid]) => {
        dl.appendChild(el("dt", label));
        const dd = el("dd", text);
        if (value !== undefined && value !== null) sign(dd, value);
        if (testid) dd.dataset.testid = testid;
        dl.appendChild(dd);
      });
      box.appendChild(dl);
      // Every currency held, valued or not: a total never hides what it leaves out.
      const held = balances[i] ? balances[i].assets.filter((b) => Number(b.total) !== 0) : [];
      if (held.length) {
        const list = el("ul", null, "holdings");
        list.dataset.testid = "holdings";
        // A holding is unvalued when its currency has no price, or it is a position
        // quoted in such a currency (XRP bought with unvalued ETH).
        const unpriced = new Set(a.unvalued_currencies);
        positions.filter((p) => p.account_id === a.account_id && unpriced.has(p.quote_currency))
          .forEach((p) => {
            const l = state.listings.get(p.symbol);
            if (l && l.base_currency) unpriced.add(l.base_currency);
          });
        held.forEach((b) => {
          const unvalued = unpriced.has(b.currency);
          const li = el("li", null, unvalued ? "unvalued" : "");
          li.dataset.currency = b.currency;
          li.appendChild(el("span", b.currency, "ccy"));
          li.appendChild(el("span", money(b.total, b.currency), "num"));
          if (unvalued) li.appendChild(el("span", "not in total: no price in " + ccy, "tag warn"));
          list.appendChild(li);
        });
        box.appendChild(list);
      }
      if (a.unvalued_currencies.length) {
        const warn = el("p", "Total excludes " + a.unvalued_currencies.join(", ") +
          " (no price in " + ccy + ").", "warn-note");
        warn.dataset.testid = "unvalued";
        box.appendChild(warn);
      }
      return box;
    });
    $("portfolio").replaceChildren(...tiles);
    if (!tiles.length) $("portfolio").appendChild(el("p", "No accounts yet.", "muted"));
  });

  // ------------------------------------------------------------------ chart
  function chartOptions() {
    return {
      autoSize: true,
      layout: { background: { color: "#ffffff" }, textColor: "#333", attributionLogo: false },
      grid: { vertLines: { color: "#f0f0f0" }, horzLines: { color: "#f0f0f0" } },
      timeScale: { timeVisible: true, secondsVisible: false },
      rightPriceScale: { borderVisible: false },
    };
  }

  function ensureCharts() {
    if (state.chart || !window.LightweightCharts) return;
    const LC = window.LightweightCharts;
    state.chart = LC.createChart($("chart"), chartOptions());
    state.candles = state.chart.addCandlestickSeries({
      upColor: "#26a69a", downColor: "#ef5350", wickUpColor: "#26a69a",
      wickDownColor: "#ef5350", borderVisible: false,
    });
    state.candles.priceScale().applyOptions({ scaleMargins: { top: 0.05, bottom: 0.25 } });
    // The volume pane: its own scale in the bottom fifth of the chart.
    state.volume = state.chart.addHistogramSeries({
      priceScaleId: "volume", priceFormat: { type: "volume" },
      priceLineVisible: false, lastValueVisible: false,
    });
    state.chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    state.chart.subscribeCrosshairMove(legend);
    state.equityChart = LC.createChart($("equity-chart"), chartOptions());
    state.equity = state.equityChart.addAreaSeries({
      lineColor: "#4a90d9", topColor: "rgba(74,144,217,0.3)", bottomColor: "rgba(74,144,217,0.02)",
      priceFormat: { type: "price", precision: 2, minMove: 0.01 },
    });
    state.ddChart = LC.createChart($("drawdown-chart"), chartOptions());
    state.drawdown = state.ddChart.addAreaSeries({
      lineColor: "#d64545", topColor: "rgba(214,69,69,0.05)", bottomColor: "rgba(214,69,69,0.35)",
      priceFormat: { type: "percent", precision: 2, minMove: 0.01 },
      invertFilledArea: true,
    });
  }

  function legend(param) {
    const symbol = $("chart").dataset.symbol;
    const bar = param && param.seriesData ? param.seriesData.get(state.candles) : null;
    if (!bar || !symbol) { $("chart-legend").textContent = ""; return; }
    const vol = param.seriesData.get(state.volume);
    $("chart-legend").textContent = symbol + "  O " + price(symbol, bar.open) + "  H " +
      price(symbol, bar.high) + "  L " + price(symbol, bar.low) + "  C " + price(symbol, bar.close) +
      (vol ? "  V " + qty(vol.value) : "");
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
        state.window = null;
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
    $("symbol").addEventListener("change", () => {
      sessionStorage.setItem("ts.symbol", $("symbol").value);
      state.window = null; state.runMarkers = null;
      loadChart();
    });
  }

  function tfSeconds(tf) {
    const m = /^(\d+)([mhdw])$/.exec(tf);
    return m ? Number(m[1]) * { m: 60, h: 3600, d: 86400, w: 604800 }[m[2]] : 3600;
  }

  // Fill and backtest-trade markers, snapped to the bar they fall in and kept in range.
  function markers(symbol, bars, fills) {
    if (!bars.length) return [];
    const step = tfSeconds(state.timeframe);
    const first = bars[0].time;
    const last = bars[bars.length - 1].time;
    const snap = (iso) => Math.floor(epoch(iso) / step) * step;
    const out = [];
    fills.filter((f) => f.symbol === symbol).forEach((f) => {
      const t = snap(f.executed_at);
      if (t < first || t > last) return;
      const buy = f.side === "BUY";
      out.push({ time: t, position: buy ? "belowBar" : "aboveBar", shape: buy ? "arrowUp" : "arrowDown",
                 color: buy ? "#1a9b6c" : "#d64545", text: (buy ? "B " : "S ") + qty(f.quantity) });
    });
    (state.runMarkers && state.runMarkers.symbol === symbol ? state.runMarkers.trades : [])
      .forEach((tr) => {
        const long = tr.direction !== "SHORT";
        const tIn = snap(tr.entry_time);
        if (tIn >= first && tIn <= last) {
          out.push({ time: tIn, position: long ? "belowBar" : "aboveBar", shape: "circle",
                     color: "#7b61ff" }); // shapes only: a run has many trades
        }
        if (tr.exit_time) {
          const tOut = snap(tr.exit_time);
          if (tOut >= first && tOut <= last) {
            out.push({ time: tOut, position: long ? "aboveBar" : "belowBar", shape: "square",
                       color: Number(tr.pnl) >= 0 ? "#1a9b6c" : "#d64545" });
          }
        }
      });
    return out.sort((a, b) => a.time - b.time);
  }

  function showEmpty(message) {
    $("chart-empty").textContent = message || "";
    $("chart-empty").hidden = !message;
  }

  let chartRequest = 0;
  const loadChart = guarded(async () => {
    const symbol = $("symbol").value;
    document.querySelectorAll("#timeframes button").forEach((b) => {
      b.classList.toggle("active", b.dataset.timeframe === state.timeframe);
      b.setAttribute("aria-pressed", String(b.dataset.timeframe === state.timeframe));
    });
    if (!state.chart) return;
    if (!symbol) { showEmpty("No listings with market data yet."); return; }
    const mine = ++chartRequest;
    $("chart-status").textContent = "loading…";
    let query = "symbol=" + encodeURIComponent(symbol) + "&timeframe=" +
      encodeURIComponent(state.timeframe);
    query += state.window ? "&end=" + encodeURIComponent(state.window.end) + "&limit=1000"
                          : "&limit=300";
    const names = OVERLAYS.filter((o) => state.overlays.has(o.key))
      .flatMap((o) => o.names || [o.key]);
    let bars, ind, fills;
    try {
      [bars, ind, fills] = await Promise.all([
        api("/market/candles?" + query),
        names.length ? api("/market/indicators?" + query + "&names=" + names.join(","))
                     : Promise.resolve(null),
        api("/fills?limit=500").then((p) => p.items).catch(() => []),
      ]);
    } catch (err) {
      if (mine !== chartRequest || err.status !== 422) throw err;
      bars = { candles: [] }; ind = null; fills = [];
      bars.reason = err.message;
    }
    if (mine !== chartRequest) return; // a newer switch won
    const candles = bars.candles.map((c) => ({
      time: epoch(c.time), open: Number(c.open), high: Number(c.high),
      low: Number(c.low), close: Number(c.close), volume: c.volume,
    }));
    const places = pricePlaces(symbol, candles.length ? candles[candles.length - 1].close : null);
    const tick = (state.listings.get(symbol) || {}).tick_size;
    const minMove = tick && Number(tick) > 0 ? Number(tick) : Math.pow(10, -places);
    state.candles.applyOptions({ priceFormat: { type: "price", precision: places, minMove } });
    state.candles.setData(candles);
    state.volume.setData(candles.map((c) => ({
      time: c.time, value: Number(c.volume),
      color: c.close >= c.open ? "rgba(38,166,154,0.45)" : "rgba(239,83,80,0.45)",
    })));
    const marks = markers(symbol, candles, fills);
    state.candles.setMarkers(marks);
    Object.values(state.lines).forEach((s) => state.chart.removeSeries(s));
    state.lines = {};
    if (ind && candles.length) {
      OVERLAYS.filter((o) => state.overlays.has(o.key)).forEach((o) => {
        (o.names || [o.key]).forEach((name) => {
          const series = state.chart.addLineSeries({
            color: o.color, lineWidth: name.endsWith("middle") ? 1 : 2,
            priceLineVisible: false, lastValueVisible: false, crosshairMarkerVisible: false,
            priceFormat: { type: "price", precision: places, minMove },
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
    chart.dataset.bars = String(candles.length);
    chart.dataset.markers = String(marks.length);
    chart.dataset.precision = String(places);
    chart.dataset.overlays = Object.keys(state.lines).join(",");
    if (!candles.length) {
      showEmpty("No data for " + symbol + " at " + state.timeframe +
        (bars.reason ? ": " + bars.reason : "."));
      $("chart-status").textContent = symbol + " · " + state.timeframe + " · no data";
    } else {
      showEmpty("");
      const lastBar = candles[candles.length - 1];
      $("chart-status").textContent = symbol + " · " + state.timeframe + " · " +
        candles.length + " bars · last " + price(symbol, lastBar.close) +
        (marks.length ? " · " + marks.length + " markers" : "") +
        (ind ? " · indicators " + ind.source : "");
    }
  });

  // ------------------------------------------------------------------ positions
  const loadPositions = guarded(async () => {
    const flat = $("positions-flat").checked;
    const positions = await api("/positions" + (flat ? "?include_flat=true" : ""));
    // A position no bar prices (a listing with only tickers) takes its latest ticker.
    const unpriced = [...new Set(positions.filter((p) => p.current_price === null).map((p) => p.symbol))];
    const tickers = new Map(await Promise.all(unpriced.map((s) =>
      api("/market/ticker?symbol=" + encodeURIComponent(s)).then((t) => [s, t]).catch(() => [s, null]))));
    const rows = positions.map((p) => {
      const t = tickers.get(p.symbol);
      let px = p.current_price;
      let value = p.market_value;
      let pnl = p.unrealized_pnl;
      if (px === null && t && t.closing_price !== null) {
        px = t.closing_price;
        value = Number(p.quantity) * Number(px);
        pnl = Number(p.quantity) * (Number(px) - Number(p.avg_entry_price));
      }
      const tr = row([
        accountName(p.account_id), p.symbol, p.side, numCell(qty(p.quantity)),
        numCell(price(p.symbol, p.avg_entry_price)), numCell(price(p.symbol, px)),
        numCell(money(value, p.quote_currency)), numCell(money(pnl, p.quote_currency), pnl),
        numCell(money(p.realized_pnl, p.quote_currency), p.realized_pnl), p.quote_currency,
      ]);
      tr.dataset.positionId = p.id;
      tr.dataset.symbol = p.symbol;
      return tr;
    });
    fill("positions", rows, "No open positions.");
    $("positions-updated").textContent = "updated " + time(new Date().toISOString()) + " UTC";
  });

  // ------------------------------------------------------------------ orders and fills
  const paging = { orders: null, fills: null, ledger: null };

  function orderRow(o) {
    const action = el("td");
    if (o.status === "NEW" || o.status === "PARTIALLY_FILLED") {
      const cancel = el("button", "Cancel", "small");
      cancel.type = "button";
      cancel.addEventListener("click", guarded(async () => {
        cancel.disabled = true;
        await api("/orders/" + o.id + "/cancel", { method: "POST" });
        await loadOrders();
      }));
      action.appendChild(cancel);
    }
    const tr = row(["#" + o.id, time(o.created_at), o.symbol, o.side, o.order_type,
      numCell(qty(o.quantity)), numCell(qty(o.filled_quantity)),
      numCell(price(o.symbol, o.price)), numCell(price(o.symbol, o.average_fill_price)),
      numCell(o.fee_currency ? money(o.fee, o.fee_currency) + " " + o.fee_currency : qty(o.fee)),
      el("td", o.status, "status st-" + o.status.toLowerCase()), o.source, action]);
    tr.dataset.orderId = o.id;
    tr.dataset.status = o.status;
    return tr;
  }

  function symbolFilter(input) {
    const f = $(input).value.trim().toUpperCase().replace("/", "");
    return (item) => !f || item.symbol.toUpperCase().replace("/", "").includes(f);
  }

  const loadOrders = guarded(async (more = false) => {
    const account = $("orders-account").value;
    const q = "/orders?status=" + encodeURIComponent($("orders-status").value) + "&limit=100" +
      (account ? "&account_id=" + account : "") +
      (more && paging.orders ? "&cursor=" + encodeURIComponent(paging.orders) : "");
    const page = await api(q);
    paging.orders = page.next_cursor;
    $("orders-more").hidden = !page.next_cursor;
    fill("orders", page.items.filter(symbolFilter("orders-symbol")).map(orderRow),
         "No orders match.", more);
  });

  const loadFills = guarded(async (more = false) => {
    const account = $("orders-account").value;
    const q = "/fills?limit=100" + (account ? "&account_id=" + account : "") +
      (more && paging.fills ? "&cursor=" + encodeURIComponent(paging.fills) : "");
    const page = await api(q);
    paging.fills = page.next_cursor;
    $("fills-more").hidden = !page.next_cursor;
    fill("fills", page.items.filter(symbolFilter("orders-symbol")).map((f) => row([
      time(f.executed_at), "#" + f.order_id, f.symbol, f.side, numCell(qty(f.quantity)),
      numCell(price(f.symbol, f.price)),
      numCell(f.fee_currency ? money(f.fee, f.fee_currency) + " " + f.fee_currency : qty(f.fee)),
      numCell(qty(f.net_amount)),
    ])), "No fills.", more);
  });

  // ------------------------------------------------------------------ ledger
  const loadLedgerView = guarded(async () => {
    $("ledger-verify-result").textContent = "";
    $("ledger-verify-result").className = "";
    await Promise.all([loadBalances(), loadLedger()]);
  });

  const loadBalances = guarded(async () => {
    const account = $("ledger-account").value;
    if (!account) { fill("balances", [], "No accounts."); return; }
    const [bal, val, positions] = await Promise.all([
      api("/accounts/" + account + "/balances"), api("/accounts/" + account + "/portfolio"),
      api("/positions?account_id=" + account).catch(() => []),
    ]);
    const unpriced = new Set(val.unvalued_currencies);
    positions.filter((p) => unpriced.has(p.quote_currency)).forEach((p) => {
      const l = state.listings.get(p.symbol);
      if (l && l.base_currency) unpriced.add(l.base_currency);
    });
    const currencies = [...new Set([...Object.keys(bal.cash), ...bal.assets.map((a) => a.currency)])].sort();
    fill("balances", currencies.map((c) => {
      const a = bal.assets.find((x) => x.currency === c) || {};
      const unvalued = unpriced.has(c);
      const valued = el("td", c === val.base_currency ? "base currency"
        : unvalued ? "no price in " + val.base_currency : "yes", unvalued ? "warn" : "muted");
      const tr = row([c, numCell(money(bal.cash[c], c)), numCell(money(a.free, c)),
        numCell(money(a.used, c)), numCell(money(a.total, c)), valued]);
      tr.dataset.currency = c;
      return tr;
    }), "No balances.");
  });

  const loadLedger = guarded(async (more = false) => {
    const account = $("ledger-account").value;
    if (!account) { fill("ledger", [], "No accounts."); return; }
    const ccy = $("ledger-currency").value.trim();
    const page = await api("/accounts/" + account + "/ledger?limit=100" +
      (ccy ? "&currency=" + encodeURIComponent(ccy) : "") +
      (more && paging.ledger ? "&cursor=" + encodeURIComponent(paging.ledger) : ""));
    paging.ledger = page.next_cursor;
    $("ledger-more").hidden = !page.next_cursor;
    fill("ledger", page.items.map((t) => {
      const hash = el("td", t.row_hash.slice(0, 12) + "…", "mono");
      hash.title = t.row_hash;
      return row([numCell(t.chain_seq), time(t.timestamp), t.transaction_type, t.currency,
        numCell(money(t.amount, t.currency), t.amount),
        t.related_order_id ? "#" + t.related_order_id : "", t.description || "", hash]);
    }), "No ledger rows.", more);
  });

  const verifyLedger = guarded(async () => {
    const account = $("ledger-account").value;
    if (!account) return;
    const out = $("ledger-verify-result");
    out.textContent = "checking…"; out.className = "muted";
    const r = await api("/accounts/" + account + "/ledger/verify");
    out.textContent = r.ok
      ? "OK: " + r.rows_checked + " rows, head #" + (r.head_seq === null ? "—" : r.head_seq)
      : "BROKEN: " + r.problems.map((p) => "#" + p.chain_seq + " " + p.problem).join("; ");
    out.className = r.ok ? "tag ok" : "tag bad";
    out.dataset.ok = String(r.ok);
  });

  // ------------------------------------------------------------------ backtests
  const loadBacktests = guarded(async () => {
    const page = await api("/backtests?limit=50");
    const rows = page.items.map((b) => {
      const tr = row([
        "#" + b.id, b.strategy_name, (b.symbols || []).join(", "), b.timeframe,
        time(b.start_date).slice(0, 10) + " → " + time(b.end_date).slice(0, 10), b.status,
        numCell(pct(b.total_return), b.total_return),
        numCell(b.sharpe_ratio === null ? "—" : Number(b.sharpe_ratio).toFixed(2)),
        numCell(pct(b.max_drawdown)), numCell(pct(b.win_rate)),
        numCell(b.total_trades === null ? "—" : b.total_trades),
      ]);
      tr.classList.add("clickable");
      tr.dataset.testid = "backtest-" + b.id;
      tr.addEventListener("click", guarded(() => showRun(b.id)));
      return tr;
    });
    fill("backtests", rows, "No backtests yet.");
    const shown = state.run && page.items.some((b) => b.id === state.run.id) ? state.run.id
      : page.items.length ? page.items[0].id : null;
    if (shown !== null) await showRun(shown);
    else $("run-card").hidden = true;
  });

  function drawdownOf(points) {
    let peak = -Infinity;
    return points.map((p) => {
      peak = Math.max(peak, p.value);
      return { time: p.time, value: peak > 0 ? (p.value / peak - 1) * 100 : 0 };
    });
  }

  async function showRun(runId) {
    const run = await api("/backtests/" + runId + "?include_trades=true");
    state.run = run;
    $("run-card").hidden = false;
    document.querySelectorAll("#backtests tbody tr").forEach((tr) => {
      tr.classList.toggle("selected", tr.dataset.testid === "backtest-" + run.id);
    });
    // Strictly increasing times, as the chart needs (the curve spans the whole run).
    const points = [];
    (run.equity_curve || []).forEach((p) => {
      const t = epoch(p.t), v = Number(p.equity);
      if (!Number.isFinite(t) || !Number.isFinite(v)) return;
      if (points.length && points[points.length - 1].time >= t) return;
      points.push({ time: t, value: v });
    });
    const dd = drawdownOf(points);
    const worst = dd.reduce((m, p) => Math.min(m, p.value), 0);
    const span = points.length ? time(points[0].time * 1000).slice(0, 10) + " → " +
      time(points[points.length - 1].time * 1000).slice(0, 10) : "no curve";
    $("equity-title").textContent = "Run #" + run.id + " · " + run.strategy_name + " · " +
      points.length + " points · " + span + " · return " + pct(run.total_return);
    $("equity-chart").dataset.points = String(points.length);
    $("drawdown-chart").dataset.worst = worst.toFixed(2);
    ensureCharts();
    if (state.equity) {
      state.equity.setData(points);
      state.drawdown.setData(dd);
      state.equityChart.timeScale().fitContent();
      state.ddChart.timeScale().fitContent();
    }
    const ccy = "USD";
    kv("run-metrics", [
      ["Status", run.status + (run.error ? ": " + run.error : "")],
      ["Symbols", (run.symbols || []).join(", ")], ["Timeframe", run.timeframe],
      ["Period", time(run.start_date) + " → " + time(run.end_date)],
      ["Initial capital", money(run.initial_capital, ccy)], ["Final value", money(run.final_value, ccy)],
      ["Total return", pct(run.total_return)], ["Annual return", pct(run.annual_return)],
      ["Sharpe", run.sharpe_ratio === null ? "—" : Number(run.sharpe_ratio).toFixed(2)],
      ["Sortino", run.sortino_ratio === null ? "—" : Number(run.sortino_ratio).toFixed(2)],
      ["Max drawdown", pct(run.max_drawdown)], ["Worst drawdown on the curve", worst.toFixed(2) + "%"],
      ["Win rate", pct(run.win_rate)],
      ["Profit factor", run.profit_factor === null ? "—" : Number(run.profit_factor).toFixed(2)],
      ["Trades", run.total_trades], ["Fee rate", qty(run.fee_rate)], ["Slippage", qty(run.slippage)],
    ]);
    kv("run-params", Object.entries(run.parameters || {}).map(([k, v]) =>
      [k, typeof v === "object" ? JSON.stringify(v) : String(v)]));
    const trades = run.trades || [];
    $("run-trades-count").textContent = trades.length + (trades.length >= 1000 ? " (first 1,000)" : "");
    fill("run-trades", trades.map((t) => {
      const sym = listingFor(t.symbol);
      const key = sym ? sym.symbol : "";
      return row([t.symbol || "", t.direction || "", time(t.entry_time),
        numCell(price(key, t.entry_price)), time(t.exit_time), numCell(price(key, t.exit_price)),
        numCell(qty(t.quantity)), numCell(t.pnl === null || t.pnl === undefined ? "—" : fixed(t.pnl, 2), t.pnl),
        numCell(pct(t.return)), t.exit_reason || ""]);
    }), "No trades recorded.");
    $("run-on-chart").disabled = !trades.length || !listingFor((run.symbols || [])[0]);
  }

  // The listing a backtest's symbol names (BTC/USDT, BTCUSDT or binance:BTCUSDT).
  function listingFor(symbol) {
    if (!symbol) return null;
    const want = String(symbol).toUpperCase().replace(/^[A-Z0-9_-]+:/, "").replace("/", "");
    for (const l of state.listings.values()) {
      if (l.exchange_symbol.toUpperCase().replace("/", "") === want ||
          l.instrument.toUpperCase().replace("/", "") === want) return l;
    }
    return null;
  }

  function runOnChart() {
    const run = state.run;
    if (!run) return;
    const listing = listingFor((run.symbols || [])[0]);
    if (!listing) return;
    const trades = (run.trades || []).filter((t) => !t.symbol || listingFor(t.symbol) === listing);
    state.runMarkers = { symbol: listing.symbol, trades };
    state.window = { end: run.end_date };
    if (TIMEFRAMES.includes(run.timeframe)) state.timeframe = run.timeframe;
    $("symbol").value = listing.symbol;
    location.hash = "#overview";
  }

  // ------------------------------------------------------------------ alerts
  async function loadAlertCount() {
    const page = await api("/alerts?status=open&limit=100").catch(() => null);
    const n = page ? page.items.length : 0;
    $("alert-count").textContent = n >= 100 ? "99+" : String(n);
    $("alert-count").hidden = !n;
  }

  const loadAlerts = guarded(async () => {
    const page = await api("/alerts?status=" + $("alerts-status").value + "&limit=100");
    const items = page.items.map((a) => {
      const li = el("li", null, "alert sev-" + String(a.severity || "").toLowerCase());
      li.dataset.alertId = a.alert_id;
      li.appendChild(el("span", a.severity || "", "badge"));
      li.appendChild(el("span", a.message, "message"));
      li.appendChild(el("span", (a.module || "") + " · " + time(a.created_at), "muted"));
      if (a.is_acknowledged) {
        li.appendChild(el("span", "acknowledged" + (a.acknowledged_by ? " by " + a.acknowledged_by : ""), "muted"));
      } else if (a.user_id !== null || user().role === "admin") {
        const ack = el("button", "Acknowledge", "small");
        ack.type = "button";
        ack.dataset.testid = "ack-" + a.alert_id;
        ack.addEventListener("click", guarded(async () => {
          ack.disabled = true;
          await api("/alerts/" + a.alert_id + "/acknowledge", { method: "POST" });
          await loadAlerts();
          await loadAlertCount();
        }));
        li.appendChild(ack);
      } else {
        li.appendChild(el("span", "system", "muted"));
      }
      return li;
    });
    $("alerts").replaceChildren(...items);
    if (!items.length) $("alerts").appendChild(el("li", "No alerts.", "muted"));
  });

  // ------------------------------------------------------------------ strategies
  const loadStrategies = guarded(async () => {
    const list = await api("/strategies");
    fill("strategies", list.map((s) => {
      const tr = row(["#" + s.id, s.name, s.strategy_type, s.is_active ? "yes" : "no",
        numCell(s.total_trades), numCell(fixed(s.total_pnl, 2), s.total_pnl),
        numCell(pct(s.win_rate)), time(s.last_executed)]);
      tr.classList.add("clickable");
      tr.dataset.testid = "strategy-" + s.id;
      tr.addEventListener("click", guarded(() => showStrategy(s.id)));
      return tr;
    }), "No strategies yet.");
    if (list.length) await showStrategy(list[0].id);
  });

  async function showStrategy(id) {
    const s = await api("/strategies/" + id);
    $("strategy-card").hidden = false;
    $("strategy-title").textContent = s.name + " · " + s.strategy_type +
      (s.description ? " · " + s.description : "");
    kv("strategy-params", Object.entries(s.parameters || {}).map(([k, v]) =>
      [k, typeof v === "object" ? JSON.stringify(v) : String(v)]));
    const items = s.signals.map((g) => el("li", time(g.created_at) + "  " +
      (g.success ? "" : "failed  ") + JSON.stringify(g.data)));
    $("strategy-signals").replaceChildren(...items);
    if (!items.length) $("strategy-signals").appendChild(el("li", "No signals yet.", "muted"));
  }

  // ------------------------------------------------------------------ runners
  // Owners (traders) and admins may halt and resume; the API decides again.
  const canOperate = () => ["trader", "admin"].includes(user().role);

  function runnerAction(r, action, label) {
    const button = el("button", label, "small");
    button.type = "button";
    button.dataset.testid = "runner-" + action + "-" + r.id;
    button.addEventListener("click", guarded(async () => {
      button.disabled = true;
      try {
        await api("/runners/" + r.id + "/" + action, { method: "POST" });
      } finally {
        await loadRunners();
      }
    }));
    return button;
  }

  const loadRunners = guarded(async () => {
    const [list, halt] = await Promise.all([api("/runners"), api("/trading/halt")]);
    $("trading-halt").textContent = halt.halted
      ? "Trading halted" + (halt.reason ? ": " + halt.reason : "") + " (since " + time(halt.changed_at) + " UTC)"
      : "Trading is on.";
    $("trading-halt").classList.toggle("down", halt.halted);
    const toggle = $("trading-toggle");
    toggle.textContent = halt.halted ? "Resume trading" : "Halt all trading";
    toggle.dataset.action = halt.halted ? "resume" : "halt";
    fill("runners", list.map((r) => {
      const stateCell = el("td", r.state + (r.halted_by ? " (" + r.halted_by + ")" : ""));
      stateCell.classList.add(r.state === "RUNNING" ? "up" : r.state === "HALTED" ? "down" : "muted");
      const lag = r.last_lag_ms === null ? "—" : fixed(r.last_lag_ms, 0) + " ms";
      const actions = el("td");
      if (canOperate()) {
        if (r.state === "HALTED") actions.appendChild(runnerAction(r, "resume", "Resume"));
        else actions.appendChild(runnerAction(r, "halt", "Halt"));
      }
      const tr = row(["#" + r.id, r.strategy, accountName(r.account_id), r.symbols.join(", "),
        r.timeframe, r.mode, stateCell, el("td", r.last_message || "—", "wrap"), time(r.last_bar_at),
        numCell(lag), r.enabled ? "yes" : "no", actions]);
      tr.dataset.testid = "runner-" + r.id;
      return tr;
    }), "No runners. Add one with `tradestore runners add`.");
  });

  async function toggleTrading() {
    const action = $("trading-toggle").dataset.action;
    if (action === "halt" &&
        !window.confirm("Halt all trading? Every runner stops and every open order is canceled.")) return;
    $("trading-toggle").disabled = true;
    try {
      await api("/trading/" + action, { method: "POST" });
    } finally {
      $("trading-toggle").disabled = false;
      await loadRunners();
    }
  }

  // ------------------------------------------------------------------ research
  // Hybrid search of the user's own and the shared documents (row-level security decides).
  const runSearch = guarded(async () => {
    const q = $("research-q").value.trim();
    if (!q) return;
    const params = new URLSearchParams({ q, mode: $("research-mode").value, limit: "20" });
    const symbol = $("research-symbol").value.trim();
    if (symbol) params.append("symbol", symbol);
    if ($("research-owner").value) params.set("owner", $("research-owner").value);
    $("research-status").textContent = "Searching…";
    let hits;
    try {
      hits = await api("/brain/search?" + params.toString());
    } catch (err) {
      $("research-status").textContent = err.status === 422 ? err.message : "";
      $("research-results").replaceChildren();
      if (err.status === 422) return;
      throw err;
    }
    $("research-status").textContent = hits.length
      ? hits.length + (hits.length === 1 ? " result" : " results") + " for “" + q + "”"
      : "No document matches “" + q + "”.";
    $("research-results").replaceChildren(...hits.map((h) => {
      const li = el("li", null, "result");
      li.dataset.testid = "hit-" + h.id;
      li.dataset.docId = h.id;
      const meta = el("div", null, "meta");
      meta.appendChild(el("span", h.source, "badge source"));
      meta.appendChild(el("span", h.file_path + "#" + h.chunk_id + (h.section ? " · " + h.section : ""), "where mono"));
      meta.appendChild(el("span", h.symbols.length ? h.symbols.join(", ") : "no symbol", "symbols"));
      meta.appendChild(el("span", time(h.published_at) + " UTC", "published muted"));
      meta.appendChild(el("span", "score " + Number(h.score).toFixed(4), "score"));
      meta.appendChild(el("span", "certainty " + (h.certainty === null ? "—" : Number(h.certainty).toFixed(3)), "certainty"));
      meta.appendChild(el("span", h.shared ? "shared" : "mine", "tag " + (h.shared ? "" : "ok")));
      li.appendChild(meta);
      li.appendChild(el("p", h.content, "text"));
      return li;
    }));
  });

  // ------------------------------------------------------------------ picks
  // brain.pick_performance has a row per model, source, prompt version and horizon: one
  // table row per model and prompt, the horizons side by side.
  const loadPickPerformance = guarded(async () => {
    const rows = await api("/brain/performance");
    const groups = new Map();
    rows.forEach((r) => {
      const key = JSON.stringify([r.model_name, r.source, r.prompt_name, r.prompt_version]);
      if (!groups.has(key)) groups.set(key, { first: r, by: {} });
      groups.get(key).by[r.horizon_days] = r;
    });
    fill("pick-performance", [...groups.values()].map(({ first, by }) => {
      const picks = Math.max(...Object.values(by).map((r) => Number(r.picks)));
      const prompt = first.prompt_name
        ? first.prompt_name + (first.prompt_version === null ? "" : " v" + first.prompt_version) : "—";
      const hit = HORIZONS.map((d) => numCell(by[d] ? pct(by[d].hit_rate) : "—"));
      const avg = HORIZONS.map((d) => (by[d] && by[d].avg_return_pct !== null
        ? numCell(fixed(by[d].avg_return_pct, 2) + "%", by[d].avg_return_pct) : numCell("—")));
      const tr = row([first.model_name || "—", first.source, prompt, numCell(picks), ...hit, ...avg]);
      tr.dataset.model = first.model_name;
      tr.dataset.prompt = prompt;
      return tr;
    }), "No pick outcomes yet (tradestore brain picks outcomes).");
  });

  // ------------------------------------------------------------------ KPIs (admins)
  const loadKpis = guarded(async () => {
    $("kpis-note").textContent = "";
    try {
      const k = await api("/kpis/latest");
      $("kpis-note").textContent = "Snapshot of " + time(k.ts) + " UTC";
      kv("kpis", Object.entries(k).filter(([key]) => key !== "ts").map(([key, v]) =>
        [key.replace(/_/g, " "), v === null ? "—" : String(v)]));
    } catch (err) {
      if (err.status === 409 || err.status === 404 || err.status === 403) {
        $("kpis-note").textContent = err.message;
        $("kpis").replaceChildren();
      } else throw err;
    }
    await loadKpiHistory();
  });

  // The last week of snapshots, newest first; a value above its alarm level is marked.
  async function loadKpiHistory() {
    let h;
    try {
      h = await api("/kpis/history?hours=168");
    } catch (err) {
      if (err.status === 409 || err.status === 403) return;
      throw err;
    }
    const levels = Object.fromEntries(h.thresholds.filter((t) => t.enabled).map((t) => [t.kpi, t]));
    const cols = ["order_latency_p95_ms", "order_failure_rate", "outbox_backlog",
                  "reconciliation_drift_count", "data_lag_seconds", "open_positions_count"];
    $("kpi-alarms").textContent = h.alarms.length
      ? "Alarms: " + h.alarms.map((a) => a.kpi + " since " + time(a.since)).join(", ")
      : "No KPI alarm.";
    const head = el("tr");
    for (const c of ["time", ...cols]) {
      const th = el("th", c.replace(/_/g, " "));
      if (levels[c]) th.title = "alarm above " + levels[c].raise_above;
      head.appendChild(th);
    }
    const rows = h.snapshots.slice().reverse().map((s) => {
      const tr = el("tr");
      tr.appendChild(el("td", time(s.ts)));
      for (const c of cols) {
        const v = s[c];
        const over = v !== null && levels[c] && Number(v) > Number(levels[c].raise_above);
        tr.appendChild(el("td", v === null ? "—" : String(v), over ? "down" : ""));
      }
      return tr;
    });
    $("kpi-history").replaceChildren(head, ...rows);
  }

  // ------------------------------------------------------------------ wiring
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("login-error").textContent = "";
    $("login-note").textContent = "";
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
  $("refresh-all").addEventListener("click", () => route());
  window.addEventListener("hashchange", () => route());
  $("positions-flat").addEventListener("change", () => loadPositions());
  $("orders-status").addEventListener("change", () => Promise.all([loadOrders(), loadFills()]));
  $("orders-account").addEventListener("change", () => Promise.all([loadOrders(), loadFills()]));
  $("orders-symbol").addEventListener("input", () => Promise.all([loadOrders(), loadFills()]));
  $("orders-more").addEventListener("click", () => loadOrders(true));
  $("fills-more").addEventListener("click", () => loadFills(true));
  $("ledger-account").addEventListener("change", () => loadLedgerView());
  $("ledger-currency").addEventListener("change", () => loadLedger());
  $("ledger-more").addEventListener("click", () => loadLedger(true));
  $("ledger-verify").addEventListener("click", () => verifyLedger());
  $("alerts-status").addEventListener("change", () => loadAlerts());
  $("run-on-chart").addEventListener("click", () => runOnChart());
  $("trading-toggle").addEventListener("click", guarded(toggleTrading));
  $("research-form").addEventListener("submit", (event) => { event.preventDefault(); runSearch(); });

  buildControls();
  if (tokens.access) showApp(); else showLogin();
})();
