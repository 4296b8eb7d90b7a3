// workflow-deeplabcut dashboard: live overview, and per estimation a Plotly plot of x, y and
// likelihood over time whose time cursor is tied to the labeled video. No inline scripts (CSP).
"use strict";

(function () {
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf"];

  // ---------------------------------------------------------------- overview, refreshed live
  const overview = document.getElementById("overview");
  if (overview) {
    setInterval(refreshOverview, 5000);
  }

  async function refreshOverview() {
    let data;
    try {
      const response = await fetch(overview.dataset.src, { credentials: "same-origin" });
      if (!response.ok) return;
      data = await response.json();
    } catch (err) {
      return; // the server restarts or the network blinks: try again at the next tick
    }
    document.getElementById("generated").textContent = data.generated;
    fill("#table-status tbody", data.tables, (t) => [
      [t.table], [t.done, "n done"], [t.pending, "n pending"], [t.reserved, "n reserved"],
      [t.errors, "n errors" + (t.errors ? " bad" : "")],
    ], "", (row, t) => { row.dataset.table = t.table; });
    fill("#workers tbody", data.workers, (w) => [
      [w.worker], [w.host], [w.pid, "n"], [w.started], [w.heartbeat_age_s, "n"], [w.tables], [w.work],
      [w.slurm_job],
    ], "No worker is running.");
    fill("#errors tbody", data.errors, (e) => [
      [e.when || ""], [e.table], [JSON.stringify(e.key), "code"], [e.message], [e.attempts, "n"],
    ], "No errors.");
  }

  function fill(selector, items, cells, emptyText, decorate) {
    const body = document.querySelector(selector);
    if (!body) return;
    const rows = items.map((item) => {
      const row = document.createElement("tr");
      for (const [text, cls] of cells(item)) {
        const td = document.createElement("td");
        td.textContent = text === null || text === undefined ? "" : String(text);
        if (cls) td.className = cls;
        row.appendChild(td);
      }
      if (decorate) decorate(row, item);
      return row;
    });
    if (!rows.length && emptyText) {
      const row = document.createElement("tr");
      row.className = "empty";
      const td = document.createElement("td");
      td.colSpan = body.closest("table").querySelectorAll("th").length;
      td.textContent = emptyText;
      row.appendChild(td);
      rows.push(row);
    }
    body.replaceChildren(...rows);
  }

  // ---------------------------------------------------------------- one estimation's plot
  document.querySelectorAll("section.estimation").forEach(setupEstimation);

  function setupEstimation(section) {
    const plot = section.querySelector(".plot");
    const cursor = section.querySelector(".cursor");
    const label = section.querySelector(".cursor-time");
    const video = section.querySelector("video");
    const fps = parseFloat(section.dataset.fps) || 1;
    const videoStart = parseInt(section.dataset.videoStart || "0", 10);
    const videoFps = parseFloat(section.dataset.videoFps || section.dataset.fps) || fps;
    const videoFrames = parseInt(section.dataset.videoNframes || "0", 10);
    let drawn = false;
    let pending = null;

    const layout = {
      grid: { rows: 3, columns: 1, pattern: "coupled", roworder: "top to bottom" },
      xaxis: { title: { text: "time (s)" } },
      yaxis: { title: { text: "x (px)" } },
      yaxis2: { title: { text: "y (px)" }, autorange: "reversed" },
      yaxis3: { title: { text: "likelihood" }, range: [0, 1.02] },
      height: 560,
      margin: { l: 60, r: 10, t: 10, b: 40 },
      legend: { orientation: "h", y: -0.12 },
      shapes: [cursorShape(0)],
      uirevision: "keep",
      hovermode: "closest",
    };

    function cursorShape(t) {
      return { type: "line", xref: "x", yref: "paper", x0: t, x1: t, y0: 0, y1: 1,
        line: { color: "#000", width: 1.5, dash: "dot" } };
    }

    function traces(data) {
      const multi = new Set(data.series.map((s) => s.individual)).size > 1;
      const out = [];
      data.series.forEach((s, i) => {
        const name = multi ? `${s.individual}/${s.body_part}` : s.body_part;
        const color = PALETTE[i % PALETTE.length];
        [["x", "y"], ["y", "y2"], ["likelihood", "y3"]].forEach(([field, axis], j) => {
          out.push({
            type: "scatter", mode: "lines", name, legendgroup: name, showlegend: j === 0,
            x: s[field].t, y: s[field].v, xaxis: "x", yaxis: axis, connectgaps: false,
            line: { color, width: 1 }, hovertemplate: `${name} ${field}: %{y}<extra>%{x:.3f} s</extra>`,
          });
        });
      });
      return out;
    }

    async function load(range) {
      const url = section.dataset.trajectory + (range ? `&start=${range[0]}&stop=${range[1]}` : "");
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`${response.status} ${await response.text()}`);
      return response.json();
    }

    function draw(data) {
      section.dataset.points = String(data.series.reduce(
        (n, s) => n + s.x.t.length + s.y.t.length + s.likelihood.t.length, 0));
      section.dataset.window = data.window.join("-");
      if (!drawn) {
        drawn = true;
        Plotly.newPlot(plot, traces(data), layout, { responsive: true, displaylogo: false }).then(() => {
          plot.on("plotly_relayout", onRelayout);
          plot.on("plotly_click", (event) => {
            if (event.points && event.points.length) setCursor(event.points[0].x, true);
          });
          section.dataset.rendered = "1";
        });
      } else {
        Plotly.react(plot, traces(data), plot.layout);
      }
    }

    // Zoom and pan: ask the server for the visible window, reduced to the plot's width again.
    function onRelayout(change) {
      let range = null;
      if ("xaxis.range[0]" in change) range = [change["xaxis.range[0]"], change["xaxis.range[1]"]];
      else if (change["xaxis.range"]) range = change["xaxis.range"];
      else if (!("xaxis.autorange" in change)) return; // the cursor moved, or a legend toggle
      clearTimeout(pending);
      pending = setTimeout(() => load(range).then(draw).catch(showError), 150);
    }

    function showError(err) {
      section.dataset.error = String(err);
      plot.textContent = `The trajectory could not be loaded: ${err}`;
    }

    // The time cursor: range input, plot clicks and the video move it together.
    function setCursor(t, seekVideo) {
      t = Math.max(0, Math.min(parseFloat(cursor.max), t));
      cursor.value = String(t);
      label.textContent = `${t.toFixed(3)} s · frame ${Math.round(t * fps)}`;
      section.dataset.cursor = String(t);
      if (drawn) Plotly.relayout(plot, { "shapes[0].x0": t, "shapes[0].x1": t });
      if (video && seekVideo) {
        const last = Math.max(videoFrames - 1, 0);
        const frame = Math.min(Math.max(Math.round(t * fps) - videoStart, 0), last);
        video.currentTime = (frame + 0.5) / videoFps; // inside the frame, not on its edge
      }
    }

    cursor.addEventListener("input", () => setCursor(parseFloat(cursor.value), true));
    if (video) {
      video.addEventListener("timeupdate", () => {
        const frame = videoStart + Math.floor(video.currentTime * videoFps);
        setCursor(frame / fps, false);
      });
    }
    load(null).then(draw).catch(showError);
  }
})();
