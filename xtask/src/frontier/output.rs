//! The frontier's outputs: one table per task (method × budget), table.json, and one SVG
//! per task (metric against measured peak, one line per method).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use serde::Serialize;
use slimfit_data::GlueTask;

use super::cells::Record;
use super::contender::Contender;
use super::fit::Choice;
use crate::table::main_metric;

const MIB: f64 = (1u64 << 20) as f64;

/// One (task, method, fraction) over its seeds.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub task: String,
    pub method: Contender,
    pub fraction: u32,
    /// Mean budget over seeds (`None` for the reference).
    pub budget_mib: Option<f64>,
    /// The main metric: (mean, sample std) over the seeds that ran.
    pub metric: Option<(f64, f64)>,
    /// Highest measured peak over seeds, MiB.
    pub peak_mib: Option<f64>,
    /// Mean wall time, seconds.
    pub wall_seconds: Option<f64>,
    /// Seeds that ran.
    pub seeds: usize,
    /// A seed's measured peak was above its budget.
    pub over_budget: bool,
    /// What it ran in (the first seed's), or `does not fit (≥ X)`.
    pub setting: String,
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// The points of `records`, grouped over seeds.
pub fn points(records: &[Record]) -> Vec<Point> {
    let mut groups: BTreeMap<(String, Contender, u32), Vec<&Record>> = BTreeMap::new();
    for r in records {
        let key = (
            r.cell.task.name().to_string(),
            r.cell.contender,
            r.cell.fraction,
        );
        groups.entry(key).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|((task, method, fraction), group)| {
            let metric_name = task
                .parse::<GlueTask>()
                .map(main_metric)
                .unwrap_or_default();
            let views: Vec<_> = group.iter().filter_map(|r| r.view()).collect();
            let metrics: Vec<f64> = views
                .iter()
                .filter_map(|v| v.final_metrics().get(&metric_name).copied())
                .collect();
            let peaks: Vec<f64> = views
                .iter()
                .filter_map(|v| v.peak_bytes)
                .map(|b| b as f64 / MIB)
                .collect();
            let budgets: Vec<f64> = group
                .iter()
                .filter_map(|r| r.budget)
                .map(|b| b.as_f64() / MIB)
                .collect();
            let over_budget = group.iter().any(|r| {
                let peak = r.view().and_then(|v| v.peak_bytes);
                matches!((r.budget, peak), (Some(b), Some(p)) if p > b.0)
            });
            let setting = match &group[0].choice {
                None => "as published".to_string(),
                Some(Choice::Fits { knobs, .. }) => knobs.describe(),
                Some(Choice::DoesNotFit { least, .. })
                    if group[0].budget.is_some_and(|b| *least <= b) =>
                {
                    format!("does not fit (only with nothing trained: {least})")
                }
                Some(Choice::DoesNotFit { least, .. }) => format!("does not fit (needs ≥ {least})"),
                Some(Choice::Refused { knobs, .. }) => {
                    format!("refused by the trainer's plan ({})", knobs.describe())
                }
            };
            Point {
                task,
                method,
                fraction,
                budget_mib: (!budgets.is_empty()).then(|| mean_std(&budgets).0),
                metric: (!metrics.is_empty()).then(|| mean_std(&metrics)),
                peak_mib: peaks.iter().copied().reduce(f64::max),
                wall_seconds: (!views.is_empty()).then(|| {
                    views.iter().map(|v| v.wall_seconds).sum::<f64>() / views.len() as f64
                }),
                seeds: metrics.len(),
                over_budget,
                setting,
            }
        })
        .collect()
}

/// The markdown table of one task.
pub fn task_table(task: &str, points: &[Point], fractions: &[u32]) -> String {
    let metric = task
        .parse::<GlueTask>()
        .map(main_metric)
        .unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "### {task} ({metric}; mean ± std over seeds)\n");
    let mut header = "| method | 1× (reference) |".to_string();
    let mut rule = "|---|---|".to_string();
    for f in fractions {
        let budget = points
            .iter()
            .find(|p| p.task == task && p.fraction == *f)
            .and_then(|p| p.budget_mib);
        let _ = write!(
            header,
            " 1/{f}{} |",
            budget.map_or(String::new(), |b| format!(" ({b:.0} MiB)"))
        );
        rule.push_str("---|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    for method in Contender::ALL {
        if !points.iter().any(|p| p.task == task && p.method == method) {
            continue;
        }
        let mut row = format!("| {} |", method.label());
        for f in std::iter::once(1).chain(fractions.iter().copied()) {
            let cell = points
                .iter()
                .find(|p| p.task == task && p.method == method && p.fraction == f);
            let _ = write!(row, " {} |", cell.map_or("—".to_string(), cell_text));
        }
        let _ = writeln!(out, "{row}");
    }
    out
}

fn cell_text(p: &Point) -> String {
    let Some((mean, std)) = p.metric else {
        return p.setting.clone();
    };
    let spread = if p.seeds > 1 {
        format!(" ± {std:.1}")
    } else {
        String::new()
    };
    format!(
        "**{mean:.1}**{spread} · {:.0} MiB{} · {:.0} s · {}",
        p.peak_mib.unwrap_or(f64::NAN),
        if p.over_budget { " (over budget)" } else { "" },
        p.wall_seconds.unwrap_or(f64::NAN),
        p.setting
    )
}

/// Writes table.md, table.json and `frontier-<task>.svg`; the paths written.
pub fn write_all(out: &Path, records: &[Record], fractions: &[u32]) -> Result<Vec<PathBuf>> {
    let points = points(records);
    let mut tasks: Vec<&str> = points.iter().map(|p| p.task.as_str()).collect();
    tasks.dedup();
    let mut md = String::from(
        "# The memory–accuracy frontier\n\nGenerated by `cargo xtask reproduce-frontier` \
         from records/ (each record holds its command). Budgets are fractions of the \
         reference full fine-tuning run's measured whole-run peak; each cell: dev metric · \
         highest measured peak over seeds · mean wall time · the configuration it ran in.\n\n",
    );
    let mut written = Vec::new();
    for task in &tasks {
        md.push_str(&task_table(task, &points, fractions));
        md.push('\n');
        let svg = out.join(format!("frontier-{task}.svg"));
        figure(&svg, task, &points)?;
        written.push(svg);
    }
    let write = |name: &str, text: &str| -> Result<PathBuf> {
        let path = out.join(name);
        slimfit_trainer::outputs::write_atomically(&path, text.as_bytes())?;
        Ok(path)
    };
    written.push(write("table.md", &md)?);
    written.push(write(
        "table.json",
        &serde_json::to_string_pretty(&points)?,
    )?);
    Ok(written)
}

fn colour(method: Contender) -> RGBColor {
    match method {
        Contender::Slimfit => RGBColor(31, 119, 180),
        Contender::Full => RGBColor(0, 0, 0),
        Contender::Lora => RGBColor(214, 39, 40),
        Contender::Lisa => RGBColor(44, 160, 44),
        Contender::Head => RGBColor(148, 103, 189),
    }
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the frontier: {e:?}")
}

/// Metric against measured peak for one task: a line per method through its budgets, and
/// the budgets as grey verticals.
fn figure(path: &Path, task: &str, points: &[Point]) -> Result<()> {
    let metric = task
        .parse::<GlueTask>()
        .map(main_metric)
        .unwrap_or_default();
    let ran: Vec<&Point> = points
        .iter()
        .filter(|p| p.task == task && p.metric.is_some() && p.peak_mib.is_some())
        .collect();
    if ran.is_empty() {
        return Ok(());
    }
    let x_max = ran.iter().filter_map(|p| p.peak_mib).fold(0.0, f64::max) * 1.1;
    let ys: Vec<f64> = ran.iter().filter_map(|p| p.metric).map(|m| m.0).collect();
    let (lo, hi) = ys
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), y| {
            (l.min(*y), h.max(*y))
        });
    let pad = ((hi - lo) * 0.15).max(1.0);
    let root = SVGBackend::new(path, (720, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{task}: dev {metric} against measured peak (budgets in grey)"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..x_max, (lo - pad)..(hi + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("measured whole-run peak, MiB")
        .y_desc(metric.as_str())
        .draw()
        .map_err(err)?;
    let mut budgets: Vec<f64> = points
        .iter()
        .filter(|p| p.task == task)
        .filter_map(|p| p.budget_mib)
        .collect();
    budgets.dedup_by(|a, b| (*a - *b).abs() < 0.5);
    for b in budgets {
        chart
            .draw_series(std::iter::once(PathElement::new(
                [(b, lo - pad), (b, hi + pad)],
                RGBColor(190, 190, 190),
            )))
            .map_err(err)?;
    }
    for method in Contender::ALL {
        let mut line: Vec<(f64, f64)> = ran
            .iter()
            .filter(|p| p.method == method)
            .filter_map(|p| Some((p.peak_mib?, p.metric?.0)))
            .collect();
        if line.is_empty() {
            continue;
        }
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        let c = colour(method);
        chart
            .draw_series(std::iter::once(PathElement::new(
                line.clone(),
                c.stroke_width(2),
            )))
            .map_err(err)?
            .label(method.label())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], c.stroke_width(2)));
        chart
            .draw_series(line.iter().map(|&p| Circle::new(p, 4, c.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
