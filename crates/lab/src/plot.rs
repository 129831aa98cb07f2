//! Line charts as SVG files (plotters, SVG backend only).

use anyhow::{anyhow, Result};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
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
    Chart { title, x_label, y_label, series, ..Chart::default() }.svg()
}

/// A span of the x axis (a fault while it was on): shaded lightly over the
/// plot, and drawn as a labelled bar in a lane of its own below it, so that
/// overlapping spans stay readable.
pub struct Band {
    pub label: String,
    pub from: f64,
    pub to: f64,
    /// Bands with the same colour are of one kind.
    pub colour: usize,
}

/// A vertical line at `x` (a percentile), in the legend.
pub struct Mark {
    pub label: String,
    pub x: f64,
}

/// A line chart with what a report page needs beyond lines: a logarithmic
/// x axis, shaded spans and marked values.
#[derive(Default)]
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: &'a [Series],
    /// Only positive x values can be drawn then.
    pub log_x: bool,
    pub bands: &'a [Band],
    pub marks: &'a [Mark],
}

/// Colours for bands (light, under the lines) and marks: none of them is a
/// series colour.
const BAND_COLOURS: [RGBColor; 4] =
    [RGBColor(255, 200, 60), RGBColor(23, 190, 207), RGBColor(227, 119, 194), RGBColor(188, 189, 34)];
const MARK_COLOURS: [RGBColor; 3] = [RGBColor(0, 0, 0), RGBColor(140, 86, 75), RGBColor(255, 0, 200)];

impl Chart<'_> {
    pub fn svg(&self) -> Result<String> {
        let usable = |p: &(f64, f64)| p.0.is_finite() && p.1.is_finite() && (!self.log_x || p.0 > 0.0);
        let all: Vec<(f64, f64)> = self.series.iter().flat_map(|s| s.points.iter().copied()).filter(usable).collect();
        if all.is_empty() {
            return Err(anyhow!("nothing to plot"));
        }
        let (mut x0, mut x1) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
        let (mut y0, mut y1) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
        if x1 <= x0 {
            (x0, x1) = if self.log_x { (x0 / 2.0, x1 * 2.0) } else { (x0 - 1.0, x1 + 1.0) };
        }
        if y1 <= y0 {
            (y0, y1) = (y0 - 1.0, y1 + 1.0);
        }
        let pad = (y1 - y0) * 0.05;
        // Lanes for the bands below the plot's own range.
        let lane = (y1 - y0) * 0.07;
        let plot = (y0 - pad)..(y1 + pad);
        let mut svg = String::new();
        match self.log_x {
            true => self.draw(&mut svg, (x0..x1).log_scale(), plot, lane)?,
            false => self.draw(&mut svg, x0..x1, plot, lane)?,
        }
        Ok(svg)
    }

    fn draw<X>(&self, out: &mut String, x: X, plot: std::ops::Range<f64>, lane: f64) -> Result<()>
    where
        X: AsRangedCoord<Value = f64>,
        X::CoordDescType: ValueFormatter<f64>,
    {
        let (top, bottom) = (plot.end, plot.start);
        let lanes_from = bottom - lane * self.bands.len() as f64;
        let y = lanes_from..top;
        let root = SVGBackend::with_string(out, (900, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(self.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(x, y)
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc(self.x_label)
            .y_desc(self.y_label)
            // No numbers beside the lanes.
            .y_label_formatter(&|v: &f64| match *v < bottom {
                true => String::new(),
                false => format!("{}", (v * 1e9).round() / 1e9),
            })
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        for (i, b) in self.bands.iter().enumerate() {
            let colour = BAND_COLOURS[b.colour % BAND_COLOURS.len()];
            let lane_top = bottom - lane * i as f64;
            chart
                .draw_series([
                    Rectangle::new([(b.from, bottom), (b.to, top)], colour.mix(0.12).filled()),
                    Rectangle::new(
                        [(b.from, lane_top - lane * 0.1), (b.to, lane_top - lane * 0.9)],
                        colour.mix(0.7).filled(),
                    ),
                ])
                .map_err(|e| anyhow!("{e}"))?;
            chart
                .draw_series([Text::new(b.label.clone(), (b.from, lane_top - lane * 0.25), ("sans-serif", 12))])
                .map_err(|e| anyhow!("{e}"))?;
        }
        for (i, s) in self.series.iter().enumerate() {
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
        for (i, m) in self.marks.iter().enumerate() {
            let colour = MARK_COLOURS[i % MARK_COLOURS.len()];
            chart
                .draw_series(LineSeries::new([(m.x, bottom), (m.x, top)], colour.stroke_width(1)))
                .map_err(|e| anyhow!("{e}"))?
                .label(m.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(1)));
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
}
