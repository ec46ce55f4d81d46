//! The latency-against-concurrency chart, drawn pixel by pixel into a PNG (an 8×8
//! bitmap font from `font8x8`: no system fonts needed).

use std::path::Path;

use anyhow::Result;
use font8x8::{BASIC_FONTS, UnicodeFonts};

/// One line of the chart: `(concurrency, milliseconds)` points.
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Line colour.
    pub color: [u8; 3],
    /// Drawn dashed (for p99) instead of solid.
    pub dashed: bool,
    /// Points, in increasing concurrency.
    pub points: Vec<(f64, f64)>,
}

const W: usize = 1040;
const H: usize = 560;
const LEFT: usize = 80;
const RIGHT: usize = 330;
const TOP: usize = 50;
const BOTTOM: usize = 70;

struct Canvas(Vec<u8>);

impl Canvas {
    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < W && (y as usize) < H {
            let i = (y as usize * W + x as usize) * 3;
            self.0[i..i + 3].copy_from_slice(&c);
        }
    }

    fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: [u8; 3], dashed: bool) {
        let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
        for i in 0..=steps {
            if dashed && (i / 6) % 2 == 1 {
                continue;
            }
            let t = i as f64 / steps as f64;
            let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                self.set(x as i64 + dx, y as i64 + dy, c);
            }
        }
    }

    fn text(&mut self, x: i64, y: i64, s: &str, c: [u8; 3]) {
        for (i, ch) in s.chars().enumerate() {
            let Some(glyph) = BASIC_FONTS.get(ch) else {
                continue;
            };
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        self.set(x + i as i64 * 8 + col, y + row as i64, c);
                    }
                }
            }
        }
    }
}

/// A round upper bound for the y axis.
fn nice_max(v: f64) -> f64 {
    let v = v.max(1.0);
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= v {
            return m * mag;
        }
    }
    10.0 * mag
}

/// Draws `series` (x: concurrency on a log scale, y: ms) with `title` into `path`.
pub fn latency_chart(path: &Path, title: &str, series: &[Series]) -> Result<()> {
    let mut c = Canvas(vec![255; W * H * 3]);
    let black = [0, 0, 0];
    let grey = [220, 220, 220];
    let xmax = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let xdecades = xmax.log10().ceil().max(1.0);
    let ymax = nice_max(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0f64, f64::max),
    );
    let (pw, ph) = ((W - LEFT - RIGHT) as f64, (H - TOP - BOTTOM) as f64);
    let px = |x: f64| LEFT as f64 + x.max(1.0).log10() / xdecades * pw;
    let py = |y: f64| TOP as f64 + ph - y / ymax * ph;
    // Grid and axes.
    for i in 0..=5 {
        let y = ymax * i as f64 / 5.0;
        c.line((px(1.0), py(y)), (LEFT as f64 + pw, py(y)), grey, false);
        let label = format!("{y:.0}");
        c.text(
            LEFT as i64 - 10 - 8 * label.len() as i64,
            py(y) as i64 - 4,
            &label,
            black,
        );
    }
    let mut x = 1.0;
    while x <= 10f64.powf(xdecades) + 0.5 {
        c.line((px(x), py(0.0)), (px(x), TOP as f64), grey, false);
        let label = format!("{x:.0}");
        c.text(
            px(x) as i64 - 4 * label.len() as i64,
            (TOP as f64 + ph) as i64 + 10,
            &label,
            black,
        );
        x *= 10.0;
    }
    c.line(
        (px(1.0), py(0.0)),
        (LEFT as f64 + pw, py(0.0)),
        black,
        false,
    );
    c.line((px(1.0), py(0.0)), (px(1.0), TOP as f64), black, false);
    c.text(LEFT as i64, 18, title, black);
    c.text(
        LEFT as i64 + pw as i64 / 2 - 120,
        H as i64 - 30,
        "concurrent requests (log scale)",
        black,
    );
    c.text(8, TOP as i64 - 20, "latency, ms", black);
    // Lines, points and legend.
    for (i, s) in series.iter().enumerate() {
        for w in s.points.windows(2) {
            c.line(
                (px(w[0].0), py(w[0].1)),
                (px(w[1].0), py(w[1].1)),
                s.color,
                s.dashed,
            );
        }
        for p in &s.points {
            for dx in -3..=3 {
                for dy in -3..=3 {
                    c.set(px(p.0) as i64 + dx, py(p.1) as i64 + dy, s.color);
                }
            }
        }
        let ly = TOP as f64 + 16.0 * i as f64 + 8.0;
        let lx = (W - RIGHT + 16) as f64;
        c.line((lx, ly), (lx + 24.0, ly), s.color, s.dashed);
        c.text(lx as i64 + 30, ly as i64 - 4, &s.name, black);
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut enc = png::Encoder::new(file, W as u32, H as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()?.write_image_data(&c.0)?;
    Ok(())
}
