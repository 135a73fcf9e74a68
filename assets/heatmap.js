// Body of js_on_load for a landscape heatmap (a gr.HTML whose value is a Plotly figure's JSON).
// Gradio provides: element (this component's root), trigger, props, watch.
// Draws with Plotly.react on every value update and reports a clicked cell as a `select` event
// {index: [start i, end j], value: z}. The cell comes from the click's own mouse position through
// the axes, not from Plotly's (throttled) hover data, and empty (NaN) cells never fire.
const plot = element.querySelector(".slr-heatmap-plot");
let chain = Promise.resolve();
let wired = false;

function cellAt(mouseEvent) {
  const layout = plot._fullLayout;
  if (!layout || !plot.calcdata || !plot.calcdata[0]) return null;
  const xaxis = layout.xaxis;
  const yaxis = layout.yaxis;
  const box = plot.getBoundingClientRect();
  const end = Math.round(xaxis.p2d(mouseEvent.clientX - box.left - xaxis._offset));
  const start = Math.round(yaxis.p2d(mouseEvent.clientY - box.top - yaxis._offset));
  const z = plot.calcdata[0][0].z;
  if (!(start >= 0 && start < z.length && end >= 0 && end < z[start].length)) return null;
  const value = z[start][end];
  if (value === null || value === undefined || !Number.isFinite(value)) return null;
  return { index: [start, end], value: value };
}

function wire() {
  if (wired) return;
  wired = true;
  plot.on("plotly_click", (event) => {
    const cell = event && event.event ? cellAt(event.event) : null;
    if (!cell) return;
    trigger("select", cell);
    // Outline the cell at once; the server's redraw of both maps follows.
    const [start, end] = cell.index;
    const outline = { type: "rect", x0: end - 0.5, x1: end + 0.5, y0: start - 0.5, y1: start + 0.5,
                      line: { color: "#111111", width: 3 }, fillcolor: "rgba(0,0,0,0)" };
    window.Plotly.relayout(plot, { shapes: [outline] });
  });
}

function draw() {
  if (!props.value) return;
  if (!window.Plotly) {
    setTimeout(draw, 100);
    return;
  }
  const figure = JSON.parse(props.value);
  const config = { displayModeBar: false, responsive: true, scrollZoom: false };
  chain = chain
    .then(() => window.Plotly.react(plot, figure.data, figure.layout, config))
    .then(() => {
      wire();
      const meta = (figure.layout && figure.layout.meta) || {};
      plot.dataset.numLayers = String(meta.num_layers ?? "");
      plot.dataset.filled = String(meta.filled ?? "");
      plot.dataset.drawn = String(Number(plot.dataset.drawn || "0") + 1);
    })
    .catch((error) => console.error("SLR heatmap draw failed:", error));
}

watch("value", draw);
draw();
