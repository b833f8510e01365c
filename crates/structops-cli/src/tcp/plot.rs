//! Line plots of per-flow time series (cwnd, goodput) as SVG and PNG, with `plotters`.
//!
//! Text in the PNGs is rasterised by `ab_glyph` from the Hack font, which the binary
//! carries (crate `epaint_default_fonts`, MIT and Bitstream Vera licences), so no system
//! font or font library is needed. SVGs name the `sans-serif` family and leave text
//! rendering to the viewer.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// One line: a flow's samples `(seconds, value)`.
#[derive(Clone, Debug)]
pub struct Line {
    /// The legend entry.
    pub name: String,
    /// The points, in time order.
    pub points: Vec<(f64, f64)>,
}

/// A chart: lines over a common time axis.
#[derive(Clone, Debug)]
pub struct Chart {
    /// The caption.
    pub title: String,
    /// The y axis's description.
    pub y_desc: String,
    /// End of the time axis (s).
    pub x_max: f64,
    /// The lines.
    pub lines: Vec<Line>,
    /// A vertical marker (time in s and its label), e.g. the live swap.
    pub marker: Option<(f64, String)>,
}

/// Why a plot could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing plot {path}: {message}")]
pub struct PlotError {
    /// The file.
    pub path: PathBuf,
    /// What plotters said.
    pub message: String,
}

/// Legends stop being readable past this many lines; larger charts have none.
const MAX_LEGEND: usize = 16;

/// Picture size in pixels (SVG user units).
const SIZE: (u32, u32) = (1024, 576);

/// Registers the bundled font as `sans-serif`, once.
fn font() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            epaint_default_fonts::HACK_REGULAR,
        )
        .map_err(|_| "the bundled font does not parse".to_string())
    })
    .clone()
}

/// Writes `chart` as `<dir>/<stem>.svg` and `<dir>/<stem>.png`; returns their paths.
///
/// # Errors
///
/// [`PlotError`] naming the file.
pub fn write(dir: &Path, stem: &str, chart: &Chart) -> Result<Vec<PathBuf>, PlotError> {
    let svg = dir.join(format!("{stem}.svg"));
    let png = dir.join(format!("{stem}.png"));
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |message: String| PlotError { path, message }
    };
    font().map_err(err(&svg))?;
    draw(SVGBackend::new(&svg, SIZE).into_drawing_area(), chart).map_err(err(&svg))?;
    draw(BitMapBackend::new(&png, SIZE).into_drawing_area(), chart).map_err(err(&png))?;
    Ok(vec![svg, png])
}

/// The y range's top: the largest value with 5% headroom (at least 1).
fn y_max(chart: &Chart) -> f64 {
    let m = chart
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    (m * 1.05).max(1.0)
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, chart: &Chart) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let x_max = if chart.x_max.is_finite() && chart.x_max > 0.0 {
        chart.x_max
    } else {
        1.0
    };
    let y_max = y_max(chart);
    let mut ch = ChartBuilder::on(&root)
        .caption(&chart.title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(e)?;
    ch.configure_mesh()
        .x_desc("time (s)")
        .y_desc(chart.y_desc.as_str())
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(WHITE.mix(0.0))
        .x_label_formatter(&|v| format!("{v:.1}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(e)?;
    let legend = chart.lines.len() <= MAX_LEGEND;
    for (i, line) in chart.lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts = line
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite());
        let series = ch
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(e)?;
        if legend {
            series.label(line.name.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
    }
    if let Some((t, label)) = &chart.marker
        && t.is_finite()
    {
        let style = BLACK.mix(0.6).stroke_width(1);
        let series = ch
            .draw_series(LineSeries::new([(*t, 0.0), (*t, y_max)], style))
            .map_err(e)?;
        if legend {
            series
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
    }
    if legend {
        ch.configure_series_labels()
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(e)?;
    }
    root.present().map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(lines: usize) -> Chart {
        Chart {
            title: "cwnd".into(),
            y_desc: "packets".into(),
            x_max: 2.0,
            lines: (0..lines)
                .map(|i| Line {
                    name: format!("flow {i}"),
                    points: (0..50)
                        .map(|k| (k as f64 * 0.04, (k * (i + 1)) as f64))
                        .collect(),
                })
                .collect(),
            marker: Some((1.0, "swap".into())),
        }
    }

    #[test]
    fn writes_svg_and_png() {
        let dir = std::env::temp_dir().join(format!("structops-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (n, stem) in [(0, "empty"), (3, "three"), (40, "many")] {
            let paths = write(&dir, stem, &chart(n)).unwrap();
            let svg = std::fs::read_to_string(&paths[0]).unwrap();
            assert!(svg.starts_with("<svg"), "{stem}");
            let png = std::fs::read(&paths[1]).unwrap();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{stem}");
            if n == 3 {
                assert!(svg.contains("flow 2"));
            }
        }
        // Degenerate input draws without panicking.
        let mut c = chart(1);
        c.x_max = f64::NAN;
        c.lines[0].points = vec![(f64::NAN, 1.0), (0.5, f64::INFINITY)];
        write(&dir, "degenerate", &c).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unwritable_directory_is_an_error() {
        let dir = Path::new("/nonexistent/structops-plot");
        let err = write(dir, "x", &chart(1)).unwrap_err();
        assert!(err.path.starts_with(dir));
    }
}
