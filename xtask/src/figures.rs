//! SVG figures of `reproduce-table` (plotters, SVG backend only):
//!
//! 1. `memory-<task>.svg`: peak memory by category per method — the memory accountant's plan
//!    of one step at the run's shape, stacked — with the measured process peak as a marker;
//! 2. `frozen-<task>.svg`: which units SlimFit (default) trained at each step, units × steps
//!    (where the report has per-step sets; otherwise how often each unit trained);
//! 3. `metric-vs-memory.svg`: dev metric against measured peak memory, every method, one
//!    panel per task.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;

use crate::reproduce::{CellRecord, Method};
use crate::table::{MethodSummary, ReportView, Table, main_metric};

const MIB: f64 = (1u64 << 20) as f64;
const FONT: &str = "sans-serif";

/// Colours of the accountant's categories, in `Categories::named` order, then runtime.
const CATEGORY_COLOURS: [RGBColor; 7] = [
    RGBColor(140, 140, 140), // parameters
    RGBColor(214, 39, 40),   // gradients
    RGBColor(255, 127, 14),  // optimizer state
    RGBColor(31, 119, 180),  // dynamic activations
    RGBColor(158, 202, 225), // static activations
    RGBColor(44, 160, 44),   // transient workspace
    RGBColor(148, 103, 189), // runtime
];

fn method_colour(method: Method) -> RGBColor {
    match method {
        Method::Full => RGBColor(0, 0, 0),
        Method::SlimfitDefault => RGBColor(31, 119, 180),
        Method::SlimfitMatched => RGBColor(23, 190, 207),
        Method::SlimfitPaper => RGBColor(255, 127, 14),
        Method::StaticPrefix => RGBColor(44, 160, 44),
        Method::Random => RGBColor(214, 39, 40),
    }
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a figure: {e:?}")
}

/// The task of the frozen-set figure: MRPC when it has a SlimFit (default) run, else the
/// first task that has one.
pub fn heatmap_task(table: &Table) -> Option<String> {
    let with = |task: &str| {
        table
            .methods
            .iter()
            .any(|m| m.task == task && m.method == Method::SlimfitDefault)
    };
    if with("mrpc") {
        return Some("mrpc".to_string());
    }
    table
        .methods
        .iter()
        .find(|m| m.method == Method::SlimfitDefault)
        .map(|m| m.task.clone())
}

/// Writes every figure into `out`; returns the paths.
pub fn write_all(out: &Path, table: &Table, records: &[CellRecord]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut tasks: Vec<&str> = Vec::new();
    for m in &table.methods {
        if !tasks.contains(&m.task.as_str()) {
            tasks.push(&m.task);
        }
    }
    for task in &tasks {
        let path = out.join(format!("memory-{task}.svg"));
        let methods: Vec<&MethodSummary> =
            table.methods.iter().filter(|m| m.task == *task).collect();
        memory_figure(&path, task, &methods)?;
        files.push(path);
    }
    if let Some(task) = heatmap_task(table) {
        let first = records
            .iter()
            .filter(|r| r.task == task && r.method == Method::SlimfitDefault)
            .min_by_key(|r| r.seed);
        if let Some(record) = first {
            let path = out.join(format!("frozen-{task}.svg"));
            frozen_figure(
                &path,
                &task,
                record.seed,
                &ReportView::parse(&record.report)?,
            )?;
            files.push(path);
        }
    }
    let path = out.join("metric-vs-memory.svg");
    metric_figure(&path, table, &tasks)?;
    files.push(path);
    Ok(files)
}

fn memory_figure(path: &Path, task: &str, methods: &[&MethodSummary]) -> Result<()> {
    let n = methods.len();
    let top = methods
        .iter()
        .flat_map(|m| {
            [
                m.predicted.as_ref().map(|p| p.total.as_f64()),
                m.peak_bytes.map(|s| s.mean),
            ]
        })
        .flatten()
        .fold(0.0, f64::max)
        / MIB;
    let seq = methods
        .iter()
        .find_map(|m| m.predicted.as_ref().map(|p| p.seq))
        .unwrap_or(0);
    let root = SVGBackend::new(path, (880, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{task}: predicted peak of one step by category ({seq} tokens), measured \
                 process peak"
            ),
            (FONT, 17),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(
            (0..(n.max(1) as i32 - 1)).into_segmented(),
            0.0..(top * 1.5).max(1.0),
        )
        .map_err(err)?;
    let labels: Vec<String> = methods.iter().map(|m| m.label.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .y_desc("MiB")
        .x_labels(n)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(err)?;
    let names: Vec<String> = methods
        .iter()
        .find_map(|m| m.predicted.as_ref())
        .map(|p| {
            p.categories
                .iter()
                .map(|(n, _)| n.replace('_', " "))
                .collect()
        })
        .unwrap_or_default();
    for (c, name) in names.iter().enumerate() {
        let colour = CATEGORY_COLOURS[c % CATEGORY_COLOURS.len()];
        let bars: Vec<Rectangle<(SegmentValue<i32>, f64)>> = methods
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let p = m.predicted.as_ref()?;
                let below: f64 = p.categories[..c].iter().map(|(_, b)| b.as_f64()).sum();
                let here = p.categories.get(c)?.1.as_f64();
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i as i32), below / MIB),
                        (SegmentValue::Exact(i as i32 + 1), (below + here) / MIB),
                    ],
                    colour.filled(),
                );
                bar.set_margin(0, 0, 18, 18);
                Some(bar)
            })
            .collect();
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
    }
    chart
        .draw_series(methods.iter().enumerate().filter_map(|(i, m)| {
            let peak = m.peak_bytes?.mean / MIB;
            Some(
                EmptyElement::at((SegmentValue::CenterOf(i as i32), peak))
                    + Circle::new((0, 0), 6, BLACK.filled())
                    + Text::new(
                        format!("{peak:.0} MiB"),
                        (10, -14),
                        (FONT, 13).into_font().color(&BLACK),
                    ),
            )
        }))
        .map_err(err)?
        .label("measured peak (whole run)")
        .legend(|(x, y)| Circle::new((x + 5, y), 5, BLACK.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// `encoder.layer.3.attention.self.query.weight` → `L3 attention.self.query`.
fn short_unit_name(name: &str) -> String {
    let name = name.strip_suffix(".weight").unwrap_or(name);
    let name = name
        .strip_prefix("bert.")
        .or_else(|| name.strip_prefix("vit."))
        .unwrap_or(name);
    if let Some(rest) = name.strip_prefix("encoder.layer.")
        && let Some((layer, unit)) = rest.split_once('.')
    {
        return format!("L{layer} {unit}");
    }
    name.to_string()
}

/// At most this many columns: longer runs are bucketed (shade = share of the bucket's steps
/// the unit trained).
const MAX_COLUMNS: usize = 600;

pub(crate) fn frozen_figure(path: &Path, task: &str, seed: u64, view: &ReportView) -> Result<()> {
    let units: Vec<String> = view
        .trained_steps_per_unit
        .iter()
        .map(|(n, _)| short_unit_name(n))
        .collect();
    let t = units.len();
    let steps = view.frozen_per_step.len();
    let height = 90 + 13 * t as u32;
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let row = |unit: usize| (t - 1 - unit) as i32; // unit 0 on top
    // plotters' integer ranges include their end: `0..t` would draw an empty row on top.
    let rows = 0..(t.max(1) as i32 - 1);
    let y_label = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(r) => units
            .get(t.wrapping_sub(1).wrapping_sub(*r as usize))
            .cloned()
            .unwrap_or_default(),
        _ => String::new(),
    };
    match &view.trained_units_per_step {
        Some(sets) if !sets.is_empty() => {
            let columns = sets.len().min(MAX_COLUMNS);
            let per = sets.len().div_ceil(columns);
            let columns = sets.len().div_ceil(per);
            let mut share = vec![vec![0.0f64; columns]; t];
            for (step, set) in sets.iter().enumerate() {
                for &u in set {
                    if u < t {
                        share[u][step / per] += 1.0 / per as f64;
                    }
                }
            }
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    format!(
                        "{task}, SlimFit (default), seed {seed}: units trained (dark) and \
                         frozen (light) at each of {steps} steps"
                    ),
                    (FONT, 16),
                )
                .margin(10)
                .x_label_area_size(34)
                .y_label_area_size(250)
                .build_cartesian_2d(0.0..sets.len() as f64, rows.clone().into_segmented())
                .map_err(err)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("step")
                .y_labels(t)
                .y_label_style((FONT, 10))
                .y_label_formatter(&y_label)
                .draw()
                .map_err(err)?;
            let mut cells = Vec::new();
            for (u, shares) in share.iter().enumerate() {
                // One rectangle per run of equal shade.
                let mut c = 0;
                while c < columns {
                    let s = shares[c];
                    let mut end = c + 1;
                    while end < columns && (shares[end] - s).abs() < 1e-9 {
                        end += 1;
                    }
                    let level = (235.0 - 200.0 * s).round() as u8;
                    cells.push(Rectangle::new(
                        [
                            ((c * per) as f64, SegmentValue::Exact(row(u))),
                            (
                                ((end * per).min(sets.len())) as f64,
                                SegmentValue::Exact(row(u) + 1),
                            ),
                        ],
                        RGBColor(level, level, level.saturating_add(20)).filled(),
                    ));
                    c = end;
                }
            }
            chart.draw_series(cells).map_err(err)?;
        }
        _ => {
            // The report has counts only: how often each unit trained.
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    format!(
                        "{task}, SlimFit (default), seed {seed}: share of the {steps} steps \
                         each unit trained (per-step sets not in this report)"
                    ),
                    (FONT, 15),
                )
                .margin(10)
                .x_label_area_size(34)
                .y_label_area_size(250)
                .build_cartesian_2d(0.0..100.0, rows.clone().into_segmented())
                .map_err(err)?;
            chart
                .configure_mesh()
                .disable_y_mesh()
                .x_desc("% of steps trained")
                .y_labels(t)
                .y_label_style((FONT, 10))
                .y_label_formatter(&y_label)
                .draw()
                .map_err(err)?;
            chart
                .draw_series(
                    view.trained_steps_per_unit
                        .iter()
                        .enumerate()
                        .map(|(u, (_, n))| {
                            let mut bar = Rectangle::new(
                                [
                                    (0.0, SegmentValue::Exact(row(u))),
                                    (
                                        100.0 * *n as f64 / steps.max(1) as f64,
                                        SegmentValue::Exact(row(u) + 1),
                                    ),
                                ],
                                RGBColor(31, 119, 180).filled(),
                            );
                            bar.set_margin(1, 1, 0, 0);
                            bar
                        }),
                )
                .map_err(err)?;
        }
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Draws the marker of a method at `at`: distinct shapes, so that methods with equal results
/// stay visible.
fn draw_marker<DB: DrawingBackend, CT: CoordTranslate>(
    area: &DrawingArea<DB, CT>,
    method: Method,
    at: CT::From,
) -> Result<()>
where
    CT::From: Clone,
{
    let colour = method_colour(method);
    let base = EmptyElement::at(at);
    match method {
        Method::SlimfitPaper => area.draw(&(base + Circle::new((0, 0), 8, colour.stroke_width(2)))),
        Method::StaticPrefix => {
            area.draw(&(base + TriangleMarker::new((0, 0), 8, colour.filled())))
        }
        Method::Random => area.draw(&(base + Cross::new((0, 0), 6, colour.stroke_width(2)))),
        Method::Full | Method::SlimfitDefault => {
            area.draw(&(base + Circle::new((0, 0), 5, colour.filled())))
        }
        Method::SlimfitMatched => {
            area.draw(&(base + Circle::new((0, 0), 5, colour.stroke_width(2))))
        }
    }
    .map_err(err)
}

fn metric_figure(path: &Path, table: &Table, tasks: &[&str]) -> Result<()> {
    let columns = tasks.len().clamp(1, 3);
    let rows = tasks.len().div_ceil(columns).max(1);
    let root =
        SVGBackend::new(path, (420 * columns as u32, 340 * rows as u32 + 64)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (title, body) = root.split_vertically(64);
    title
        .draw(&Text::new(
            "Dev metric against measured peak memory (mean over seeds)",
            (12, 8),
            (FONT, 18),
        ))
        .map_err(err)?;
    let mut x = 20;
    for method in Method::ALL {
        draw_marker(&title, method, (x, 46))?;
        title
            .draw(&Text::new(method.label(), (x + 14, 40), (FONT, 13)))
            .map_err(err)?;
        x += 40 + 7 * method.label().len() as i32;
    }
    let panels = body.split_evenly((rows, columns));
    for (task, panel) in tasks.iter().zip(panels.iter()) {
        metric_panel(panel, table, task)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

fn metric_panel(
    panel: &DrawingArea<SVGBackend<'_>, Shift>,
    table: &Table,
    task: &str,
) -> Result<()> {
    let metric = task
        .parse()
        .map(main_metric)
        .unwrap_or_else(|_| "metric".to_string());
    let points: Vec<(Method, f64, f64)> = table
        .methods
        .iter()
        .filter(|m| m.task == task)
        .filter_map(|m| {
            Some((
                m.method,
                m.peak_bytes?.mean / MIB,
                m.metrics.get(&metric)?.mean,
            ))
        })
        .collect();
    if points.is_empty() {
        panel
            .draw(&Text::new(
                format!("{task}: no measured peaks (this backend)"),
                (10, 20),
                (FONT, 14),
            ))
            .map_err(err)?;
        return Ok(());
    }
    let (x_max, y_min, y_max) = points.iter().fold(
        (0.0f64, f64::INFINITY, f64::NEG_INFINITY),
        |(x, lo, hi), p| (x.max(p.1), lo.min(p.2), hi.max(p.2)),
    );
    let pad = ((y_max - y_min) * 0.15).max(1.0);
    let mut chart = ChartBuilder::on(panel)
        .caption(task, (FONT, 16))
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(48)
        .build_cartesian_2d(0.0..x_max * 1.15, (y_min - pad)..(y_max + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("peak MiB")
        .y_desc(metric.as_str())
        .label_style((FONT, 11))
        .draw()
        .map_err(err)?;
    for &(method, x, y) in &points {
        draw_marker(chart.plotting_area(), method, (x, y))?;
    }
    Ok(())
}
