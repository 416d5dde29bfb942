//! SVG plots of the reports, drawn with `plotters`: recall against queries/s (log axis, one line per
//! library) and a bar per search mode. Text is left to the SVG viewer (no font files needed).

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

/// One labelled curve.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

fn colour(i: usize) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
        RGBColor(140, 86, 75),
        RGBColor(23, 190, 207),
        RGBColor(127, 127, 127),
    ];
    C[i % C.len()]
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the plot: {e}")
}

/// Recall (x, linear) against throughput (y, log scale); a series of one point is drawn as a mark.
pub fn recall_throughput(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> anyhow::Result<()> {
    let points = || series.iter().flat_map(|s| s.points.iter().copied());
    let (mut x0, mut x1) =
        points().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| (a.min(x), b.max(x)));
    let (mut y0, mut y1) = points()
        .filter(|(_, y)| *y > 0.0)
        .fold((f64::MAX, f64::MIN), |(a, b), (_, y)| (a.min(y), b.max(y)));
    if x0 > x1 {
        (x0, x1) = (0.0, 1.0);
    }
    if y0 > y1 {
        (y0, y1) = (1.0, 10.0);
    }
    let x0 = (x0 - 0.02).max(0.0);
    let x1 = (x1 + 0.01).min(1.0).max(x0 + 0.05);
    let (y0, y1) = (y0 / 1.5, y1 * 1.5);
    let root = SVGBackend::new(path, (860, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&|x| format!("{x:.2}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(err)?;
    for (i, s) in series.iter().enumerate() {
        let c = colour(i);
        let mut pts: Vec<(f64, f64)> = s.points.iter().copied().filter(|(_, y)| *y > 0.0).collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(err)?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// One bar per label: scores in 0..=1 (nDCG@10) on a 0..1 axis, larger values (MB/s) on their own.
pub fn bars(path: &Path, title: &str, y_label: &str, bars: &[(String, f64)]) -> anyhow::Result<()> {
    let n = bars.len().max(1);
    let top = bars
        .iter()
        .map(|(_, v)| *v)
        .fold(0.0f64, f64::max)
        .max(0.05)
        * 1.15;
    let root = SVGBackend::new(path, (860, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(
            0.0..n as f64,
            0.0..if top <= 1.15 { top.min(1.0) } else { top },
        )
        .map_err(err)?;
    let names: Vec<String> = bars.iter().map(|(l, _)| l.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let i = (*x - 0.5).round();
            if (x - 0.5 - i).abs() < 0.01 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_label)
        .y_label_formatter(&|y| format!("{y:.2}"))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            let x = i as f64;
            Rectangle::new([(x + 0.15, 0.0), (x + 0.85, *v)], colour(i).filled())
        }))
        .map_err(err)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            Text::new(
                format!("{v:.3}"),
                (i as f64 + 0.35, *v + top * 0.02),
                ("sans-serif", 13),
            )
        }))
        .map_err(err)?;
    root.present().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text elements' contents.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                t.split_once('>')
                    .and_then(|(_, rest)| rest.split_once("</text>"))
            })
            .map(|(inner, _)| inner.trim().to_owned())
            .collect()
    }

    #[test]
    fn a_recall_plot_is_an_svg_naming_every_series() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.svg");
        let series = vec![
            Series {
                label: "ours".into(),
                points: vec![(0.9, 2000.0), (0.99, 500.0)],
            },
            Series {
                label: "exact".into(),
                points: vec![(1.0, 60.0)],
            },
        ];
        recall_throughput(&path, "t", "recall@10", "q/s", &series).expect("plot");
        let svg = std::fs::read_to_string(&path).expect("read");
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(texts(&svg).contains(&"ours".to_owned()));
        assert!(texts(&svg).contains(&"exact".to_owned()));
    }

    #[test]
    fn a_bar_plot_labels_each_bar_with_its_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b.svg");
        bars(
            &path,
            "t",
            "nDCG@10",
            &[("keyword".into(), 0.41), ("hybrid".into(), 0.52)],
        )
        .expect("plot");
        let svg = std::fs::read_to_string(&path).expect("read");
        let t = texts(&svg);
        assert!(t.contains(&"keyword".to_owned()), "{t:?}");
        assert!(t.contains(&"0.520".to_owned()), "{t:?}");
    }
}
