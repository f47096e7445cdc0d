//! `cargo run --bin charts`: draws the charts of docs/benchmarks.md (SVG, in docs/charts/) from
//! that file's own tables, which are the benches' output as it was run. Run it after pasting a
//! new bench result; a test fails while a chart is out of date with its table.
//!
//! Each chart names the heading it reads under and the first table there with the columns it
//! needs, so a newer run put first under the same heading is what gets drawn.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    match write_all(root) {
        Ok(written) => {
            let mut out = std::io::stdout().lock();
            for path in written {
                let _ = writeln!(out, "wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "charts: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn write_all(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = root.join("docs/charts");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for (name, svg) in charts(root)? {
        let path = dir.join(name);
        std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Every chart: its file name and its SVG.
fn charts(root: &Path) -> anyhow::Result<Vec<(&'static str, String)>> {
    let path = root.join("docs/benchmarks.md");
    let doc =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(vec![
        ("hit-cost.svg", hit_cost(&doc)?.svg()),
        ("purge-propagation.svg", purge_propagation(&doc)?.svg()),
        ("l2-vs-l1.svg", l2_vs_l1(&doc)?.svg()),
        ("origin-offload.svg", origin_offload(&doc)?.svg()),
    ])
}

/// Hits per server CPU-second, per proxy and object size (the newest hit-path run, plain HTTP).
fn hit_cost(doc: &str) -> anyhow::Result<Chart> {
    let t = Table::find(
        doc,
        "## Edge hit path",
        &["proxy", "object", "req per CPU-s"],
    )?;
    let mut chart = Chart::new(
        "Cache hits per server CPU-second (plain HTTP/1.1, keep-alive, one core)",
        "hits per CPU-second (higher is better)",
    );
    for row in &t.rows {
        chart.add(
            t.cell(row, "object")?,
            t.cell(row, "proxy")?,
            t.number(row, "req per CPU-s")?,
        );
    }
    chart.source = t.source;
    Ok(chart)
}

/// Accepted purge → every node of the region serving the new version, by poll interval.
fn purge_propagation(doc: &str) -> anyhow::Result<Chart> {
    let t = Table::find(
        doc,
        "### `wait: false`",
        &["poll interval", "from t0 until", "p50", "p90", "p99", "max"],
    )?;
    let mut chart = Chart::new(
        "Purge propagation: accepted → all 3 nodes serve the new version",
        "milliseconds (lower is better); goal: p99 ≤ 250 ms",
    );
    chart.goal = Some(250.0);
    for row in t.rows.iter().filter(|r| {
        t.cell(r, "from t0 until")
            .is_ok_and(|c| c.contains("all") && c.contains("nodes"))
    }) {
        let group = format!("poll every {}", t.cell(row, "poll interval")?);
        for p in ["p50", "p90", "p99", "max"] {
            chart.add(&group, p, t.number(row, p)?);
        }
    }
    chart.source = t.source;
    Ok(chart)
}

/// Latency of one hit from L1 and from L2 (memcached), per object size.
fn l2_vs_l1(doc: &str) -> anyhow::Result<Chart> {
    let t = Table::find(doc, "### L2 hit path", &["Object", "Tier", "p50", "p99"])?;
    let mut chart = Chart::new(
        "One hit, sequential requests: L1 (in process) vs L2 (memcached on loopback)",
        "microseconds (lower is better)",
    );
    for row in &t.rows {
        let tier = t.cell(row, "Tier")?;
        for p in ["p50", "p99"] {
            chart.add(
                t.cell(row, "Object")?,
                &format!("{tier} {p}"),
                t.number(row, p)?,
            );
        }
    }
    chart.source = t.source;
    Ok(chart)
}

/// Requests that reached the origin, with and without the shared tier.
fn origin_offload(doc: &str) -> anyhow::Result<Chart> {
    let t = Table::find(doc, "### Origin offload", &["", "origin requests"])?;
    let mut chart = Chart::new(
        "Origin requests for 100 000 Zipf requests over 4 nodes, then 20 000 to a restarted node",
        "requests that reached the origin (lower is better)",
    );
    for row in &t.rows {
        let what = t.cell(row, "")?;
        let (series, group) = what
            .split_once(", ")
            .with_context(|| format!("`{what}`: expected `with(out) shared tier, …`"))?;
        chart.add(group, series, t.number(row, "origin requests")?);
    }
    chart.source = t.source;
    Ok(chart)
}

/// A Markdown table: its header and rows of cells.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Where it was found, for the chart's caption.
    source: String,
}

impl Table {
    /// The first table under the first heading starting with `heading` whose header has every
    /// column in `columns`.
    fn find(doc: &str, heading: &str, columns: &[&str]) -> anyhow::Result<Self> {
        let start = doc
            .lines()
            .position(|l| l.starts_with(heading))
            .with_context(|| format!("no heading `{heading}` in docs/benchmarks.md"))?;
        let lines: Vec<&str> = doc.lines().skip(start).collect();
        let mut i = 1;
        while i < lines.len() {
            if lines[i].starts_with("## ") && heading.starts_with("## ") {
                break;
            }
            if lines[i].starts_with('|') {
                let header = cells(lines[i]);
                let end = lines[i..]
                    .iter()
                    .position(|l| !l.starts_with('|'))
                    .map_or(lines.len(), |n| i + n);
                if columns.iter().all(|c| header.iter().any(|h| h == c)) {
                    let rows = lines[i + 2..end].iter().map(|l| cells(l)).collect();
                    return Ok(Self {
                        header,
                        rows,
                        source: format!(
                            "docs/benchmarks.md, under \u{201c}{}\u{201d}",
                            lines[0].trim_start_matches('#').trim()
                        ),
                    });
                }
                i = end;
            }
            i += 1;
        }
        bail!("no table with columns {columns:?} under `{heading}`")
    }

    fn cell<'r>(&self, row: &'r [String], column: &str) -> anyhow::Result<&'r str> {
        let at = self
            .header
            .iter()
            .position(|h| h == column)
            .with_context(|| format!("no column `{column}`"))?;
        row.get(at)
            .map(String::as_str)
            .with_context(|| format!("a row without `{column}`: {row:?}"))
    }

    /// The cell as a number: digit-group spaces, bold and units removed.
    fn number(&self, row: &[String], column: &str) -> anyhow::Result<f64> {
        let text = self.cell(row, column)?;
        let digits: String = text
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '.' || *c == '-')
            .collect();
        digits
            .parse()
            .with_context(|| format!("`{text}` in `{column}` is not a number"))
    }
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner
        .split('|')
        .map(|c| c.trim().trim_matches('*').to_owned())
        .collect()
}

/// A horizontal grouped bar chart.
struct Chart {
    title: String,
    axis: String,
    /// Groups in order, each with its bars (series name, value).
    groups: Vec<(String, Vec<(String, f64)>)>,
    /// A vertical line at this value.
    goal: Option<f64>,
    source: String,
}

const PALETTE: [&str; 6] = [
    "#1f6feb", "#d97706", "#6b7280", "#059669", "#b91c1c", "#7c3aed",
];
const WIDTH: f64 = 820.0;
const LABEL_W: f64 = 190.0;
const BAR_H: f64 = 18.0;
const GAP: f64 = 14.0;

impl Chart {
    fn new(title: &str, axis: &str) -> Self {
        Self {
            title: title.to_owned(),
            axis: axis.to_owned(),
            groups: Vec::new(),
            goal: None,
            source: String::new(),
        }
    }

    fn add(&mut self, group: &str, series: &str, value: f64) {
        match self.groups.iter_mut().find(|(g, _)| g == group) {
            Some((_, bars)) => bars.push((series.to_owned(), value)),
            None => self
                .groups
                .push((group.to_owned(), vec![(series.to_owned(), value)])),
        }
    }

    /// The series in order of first appearance: one colour each.
    fn series(&self) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        for (_, bars) in &self.groups {
            for (s, _) in bars {
                if !seen.contains(&s.as_str()) {
                    seen.push(s);
                }
            }
        }
        seen
    }

    fn svg(&self) -> String {
        let series = self.series();
        let max = self
            .groups
            .iter()
            .flat_map(|(_, b)| b.iter().map(|(_, v)| *v))
            .chain(self.goal)
            .fold(0.0_f64, f64::max);
        let scale_max = nice_ceiling(max);
        let plot_w = WIDTH - LABEL_W - 90.0;
        let x = |v: f64| LABEL_W + v / scale_max * plot_w;
        let legend_rows = series.len().div_ceil(3);
        let top = 48.0 + legend_rows as f64 * 18.0;
        let bars: usize = self.groups.iter().map(|(_, b)| b.len()).sum();
        let plot_h = bars as f64 * BAR_H + self.groups.len() as f64 * GAP;
        let height = top + plot_h + 64.0;

        let mut s = String::new();
        let _ = write!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
             viewBox=\"0 0 {WIDTH} {height}\" font-family=\"system-ui, -apple-system, 'Segoe UI', \
             sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n"
        );
        let _ = writeln!(
            s,
            "<text x=\"12\" y=\"22\" font-size=\"15\" font-weight=\"600\">{}</text>",
            escape(&self.title)
        );
        for (i, name) in series.iter().enumerate() {
            let (col, row) = (i % 3, i / 3);
            let lx = 12.0 + col as f64 * 270.0;
            let ly = 40.0 + row as f64 * 18.0;
            let _ = writeln!(
                s,
                "<rect x=\"{lx}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
                 <text x=\"{}\" y=\"{}\">{}</text>",
                ly - 10.0,
                PALETTE[i % PALETTE.len()],
                lx + 18.0,
                ly,
                escape(name)
            );
        }
        // Grid: five steps of the rounded maximum.
        for step in 0..=5 {
            let v = scale_max * f64::from(step) / 5.0;
            let gx = x(v);
            let _ = writeln!(
                s,
                "<line x1=\"{gx:.1}\" y1=\"{top}\" x2=\"{gx:.1}\" y2=\"{:.1}\" stroke=\"#e5e7eb\"/>\
                 <text x=\"{gx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#4b5563\">{}</text>",
                top + plot_h,
                top + plot_h + 16.0,
                format_value(v)
            );
        }
        let mut y = top + GAP / 2.0;
        for (group, group_bars) in &self.groups {
            let group_h = group_bars.len() as f64 * BAR_H;
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-weight=\"600\">{}</text>",
                LABEL_W - 10.0,
                y + group_h / 2.0 + 4.0,
                escape(group)
            );
            for (name, value) in group_bars {
                let colour = series
                    .iter()
                    .position(|n| n == name)
                    .map_or(PALETTE[0], |i| PALETTE[i % PALETTE.len()]);
                let _ = writeln!(
                    s,
                    "<rect x=\"{LABEL_W}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\">\
                     <title>{}: {}</title></rect>\
                     <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#111827\">{}</text>",
                    x(*value) - LABEL_W,
                    BAR_H - 3.0,
                    escape(name),
                    format_value(*value),
                    x(*value) + 4.0,
                    y + BAR_H - 6.0,
                    format_value(*value)
                );
                y += BAR_H;
            }
            y += GAP;
        }
        if let Some(goal) = self.goal {
            let gx = x(goal);
            let _ = writeln!(
                s,
                "<line x1=\"{gx:.1}\" y1=\"{top}\" x2=\"{gx:.1}\" y2=\"{:.1}\" stroke=\"#b91c1c\" \
                 stroke-dasharray=\"5,4\" stroke-width=\"1.5\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#b91c1c\" text-anchor=\"end\">goal</text>",
                top + plot_h,
                gx - 4.0,
                top + 12.0
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{LABEL_W}\" y=\"{:.1}\" fill=\"#374151\">{}</text>",
            top + plot_h + 34.0,
            escape(&self.axis)
        );
        let _ = writeln!(
            s,
            "<text x=\"12\" y=\"{:.1}\" fill=\"#6b7280\" font-size=\"10\">from {} \
             (cargo run --bin charts)</text>",
            top + plot_h + 54.0,
            escape(&self.source)
        );
        s.push_str("</svg>\n");
        s
    }
}

/// The smallest 1, 1.5, 2, 2.5, 3, 4 or 5 × 10ⁿ at or above `v` (five grid steps divide each).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * magnitude)
}

/// `178162` → `178 162`; `73.9` → `73.9`.
fn format_value(v: f64) -> String {
    if v.fract().abs() > 1e-9 && v < 1000.0 {
        return format!("{v:.1}");
    }
    let digits = format!("{:.0}", v.round());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push('\u{2009}');
        }
        out.push(c);
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_charts_are_drawn_from_the_tables_as_they_are() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (name, svg) in charts(root).expect("charts") {
            let path = root.join("docs/charts").join(name);
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == svg,
                "{} is out of date with docs/benchmarks.md: run `cargo run --bin charts`",
                path.display()
            );
        }
    }

    #[test]
    fn every_chart_has_its_bars() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let doc = std::fs::read_to_string(root.join("docs/benchmarks.md")).expect("doc");
        let bars = |c: &Chart| c.groups.iter().map(|(_, b)| b.len()).sum::<usize>();
        // 5 proxies (nginx twice) × 2 sizes; 2 intervals × 4 percentiles; 3 sizes × 2 tiers ×
        // 2 percentiles; 2 situations × with and without.
        assert_eq!(bars(&hit_cost(&doc).expect("hit cost")), 10);
        assert_eq!(bars(&purge_propagation(&doc).expect("purge")), 8);
        assert_eq!(bars(&l2_vs_l1(&doc).expect("l2")), 12);
        assert_eq!(bars(&origin_offload(&doc).expect("offload")), 4);
    }

    #[test]
    fn numbers_read_as_written() {
        let t = Table {
            header: vec!["a".into()],
            rows: vec![],
            source: String::new(),
        };
        for (cell, want) in [
            ("178 162", 178_162.0),
            ("**1.42** (nginx)", 1.42),
            ("73.9 ms", 73.9),
            ("129 µs", 129.0),
        ] {
            assert_eq!(t.number(&[cell.to_owned()], "a").expect(cell), want);
        }
        assert_eq!(nice_ceiling(178_162.0), 200_000.0);
        assert_eq!(nice_ceiling(250.0), 250.0);
        assert_eq!(nice_ceiling(25_490.0), 30_000.0);
        assert_eq!(format_value(178_162.0), "178\u{2009}162");
    }
}
