//! Line charts as SVG files (plotters, SVG backend only).

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use std::path::Path;

pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// A thin line without point marks (fitted curves, event markers).
    pub fitted: bool,
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(127, 127, 127),
];

/// One chart: every series as a line with its points marked, written to `path`.
pub fn line_chart(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Result<()> {
    let svg = line_chart_svg(title, x_label, y_label, series).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    std::fs::write(path, svg).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// The same chart as SVG text (to embed in a page).
pub fn line_chart_svg(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Result<String> {
    let mut svg = String::new();
    draw(&mut svg, title, x_label, y_label, series)?;
    Ok(svg)
}

fn draw(out: &mut String, title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Result<()> {
    let all: Vec<(f64, f64)> =
        series.iter().flat_map(|s| s.points.iter().copied()).filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
    if all.is_empty() {
        return Err(anyhow!("nothing to plot"));
    }
    let (mut x0, mut x1) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (mut y0, mut y1) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if x1 <= x0 {
        (x0, x1) = (x0 - 1.0, x1 + 1.0);
    }
    if y1 <= y0 {
        (y0, y1) = (y0 - 1.0, y1 + 1.0);
    }
    let pad = (y1 - y0) * 0.05;
    let root = SVGBackend::with_string(out, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
        .map_err(|e| anyhow!("{e}"))?;
    chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw().map_err(|e| anyhow!("{e}"))?;
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let style = if s.fitted { colour.stroke_width(1) } else { colour.stroke_width(2) };
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), style))
            .map_err(|e| anyhow!("{e}"))?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        if !s.fitted {
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                .map_err(|e| anyhow!("{e}"))?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
