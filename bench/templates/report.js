
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("bench-data").textContent);
  var config = {responsive: true, displaylogo: false};
  function draw(id, fid) {
    var f = data.figures[fid];
    return Plotly.newPlot(id, f.data, f.layout, config);
  }
  // plotly reads trace names and titles as HTML-like text: strings of the results go in escaped
  function esc(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  function option(sel, value, text) {
    var o = document.createElement("option"); o.value = value; o.textContent = text; sel.appendChild(o);
  }
  data.rd.forEach(function (r) { draw(r.id, r.id); });

  var seqSel = document.getElementById("seq-select");
  data.sequences.forEach(function (s, i) { option(seqSel, i, s.label); });
  function showSequence() {
    var s = data.sequences[+seqSel.value], box = document.getElementById("seq-plots");
    box.innerHTML = "";
    document.getElementById("seq-bd").innerHTML = s ? s.bd : "<p class=note>no sequence of your own runs</p>";
    if (!s) return;
    s.figures.forEach(function (fid) {
      var d = document.createElement("div"); d.className = "plot seq"; d.id = "p-" + fid; box.appendChild(d); draw(d.id, fid);
    });
  }
  seqSel.addEventListener("change", showSequence);
  showSequence();

  var fr = data.frames, frSeq = document.getElementById("fr-seq"), frCodec = document.getElementById("fr-codec"),
      frRate = document.getElementById("fr-rate"), frMetric = document.getElementById("fr-metric");
  function uniq(a) { return a.filter(function (v, i) { return a.indexOf(v) === i; }); }
  function seqKey(j) { return j.dataset + " / " + j.sequence; }
  uniq(fr.jobs.map(seqKey)).forEach(function (k) { option(frSeq, k, k); });
  fr.metrics.forEach(function (m) { option(frMetric, m, fr.labels[m]); });
  function fill(sel, values) {
    var keep = sel.value; sel.innerHTML = "";
    values.forEach(function (v) { option(sel, v, v); });
    if (values.indexOf(keep) >= 0) sel.value = keep;
  }
  function refill() {
    var js = fr.jobs.filter(function (j) { return seqKey(j) === frSeq.value; });
    fill(frCodec, uniq(js.map(function (j) { return j.codec; })));
    fill(frRate, uniq(js.filter(function (j) { return j.codec === frCodec.value; }).map(function (j) { return j.rate; })));
    showFrames();
  }
  function showFrames() {
    var job = fr.jobs.filter(function (j) { return seqKey(j) === frSeq.value && j.codec === frCodec.value && j.rate === frRate.value; })[0];
    var box = document.getElementById("fr-plot");
    if (!job) { box.innerHTML = "<p class=note>no per-frame rows in the results</p>"; return; }
    var m = frMetric.value, traces = [];
    uniq(job.type).forEach(function (t) {
      var idx = job.type.map(function (v, i) { return v === t ? i : -1; }).filter(function (i) { return i >= 0; });
      var name = esc(t || "(no type)"), colour = fr.colours[t] || "#7f7f7f";
      var x = idx.map(function (i) { return job.frame[i]; });
      traces.push({type: "bar", x: x, y: idx.map(function (i) { return job.bits[i]; }), name: name + " bits", legendgroup: name,
                   marker: {color: colour}, hovertemplate: "frame %{x} (" + name + ")<br>%{y:.0f} bits<extra></extra>"});
      if (m) traces.push({type: "scatter", mode: "markers", x: x, y: idx.map(function (i) { return job.values[m][i]; }), name: name + " " + esc(m),
                   legendgroup: name, xaxis: "x", yaxis: "y2", marker: {color: colour, size: 7},
                   hovertemplate: "frame %{x} (" + name + ")<br>" + esc(m) + " %{y:.4f}<extra></extra>"});
    });
    var layout = {template: "plotly_white", height: 520, barmode: "overlay", hovermode: "closest", margin: {l: 60, r: 10, t: 40, b: 45},
      title: {text: esc(job.codec + " " + job.rate + " on " + seqKey(job)), font: {size: 13}},
      xaxis: {title: {text: "frame"}, anchor: "y"}, yaxis: {title: {text: "bits"}, domain: [0.55, 1]},
      yaxis2: {title: {text: m ? esc(fr.labels[m]) : ""}, domain: [0, 0.42], anchor: "x"}};
    Plotly.newPlot(box, traces, layout, config);
  }
  frSeq.addEventListener("change", refill);
  frCodec.addEventListener("change", refill);
  frRate.addEventListener("change", showFrames);
  frMetric.addEventListener("change", showFrames);
  refill();
  document.body.setAttribute("data-ready", "1");
})();
