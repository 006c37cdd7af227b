//! Server-rendered SVG charts: a horizontal bar chart with a labelled axis, built with maud.
//! No script and no `style=` (the CSP forbids inline style): colours come from the stylesheet's
//! `.chart` classes. Each chart is an `img` with a `<title>` and `<desc>` naming what it shows,
//! each bar has its own `<title>` (value on hover), and the figures stay in a table beside it
//! (the accessible source of truth; the chart is for the eye).

use maud::{html, Markup};

/// Most bars a chart draws (the callers' queries are bounded; this bounds the drawing).
pub const BARS_MAX: usize = 40;
/// The drawing's geometry, in SVG user units (the SVG scales to the page's width).
struct Layout {
    /// The whole drawing.
    width: u32,
    /// Room left of the bars for their labels; then right of them for their values.
    label_width: u32,
    value_width: u32,
    /// One bar's row; then the room under the bars for the axis and its ticks.
    row_height: u32,
    axis_height: u32,
    /// Ticks on the axis, 0 not counted.
    ticks: u32,
}

const L: Layout = Layout { width: 720, label_width: 190, value_width: 90, row_height: 26, axis_height: 34, ticks: 5 };

/// One bar: its label and its value (non-negative; negative values are drawn as 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: f64,
}

/// A "nice" upper bound of the axis: 1, 2 or 5 × 10^k at or above `max`.
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|v| *v >= max).unwrap_or(10.0 * magnitude)
}

/// A number as people read it: integers without decimals, others with one.
pub fn number(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

/// A horizontal bar chart. `id` makes the title's and description's ids unique in the page.
pub fn bars(id: &str, title: &str, unit: &str, data: &[Bar]) -> Markup {
    let data = &data[..data.len().min(BARS_MAX)];
    let rows = u32::try_from(data.len()).unwrap_or(0).max(1);
    let height = rows * L.row_height + L.axis_height;
    let plot = f64::from(L.width - L.label_width - L.value_width);
    let top = nice_max(data.iter().map(|b| b.value).fold(0.0, f64::max));
    // Counts below the tick count get one tick per unit: no "0.2 cases".
    let integral = data.iter().all(|b| b.value.fract() == 0.0);
    let ticks = if integral && top < f64::from(L.ticks) { (top as u32).max(1) } else { L.ticks };
    let x = |v: f64| f64::from(L.label_width) + plot * (v.max(0.0) / top);
    let axis_y = rows * L.row_height;
    let summary =
        data.iter().map(|b| format!("{}: {} {unit}", b.label, number(b.value))).collect::<Vec<_>>().join("; ");
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" role="img" width="100%"
            viewBox={ "0 0 " (L.width) " " (height) } aria-labelledby={ (id) "-title " (id) "-desc" } {
            title id={ (id) "-title" } { (title) }
            desc id={ (id) "-desc" } { @if data.is_empty() { "No data yet." } @else { (summary) } }
            @for (i, b) in data.iter().enumerate() {
                @let y = u32::try_from(i).unwrap_or(0) * L.row_height;
                g.bar-row {
                    title { (b.label) ": " (number(b.value)) " " (unit) }
                    text.label x=(L.label_width - 8) y=(y + L.row_height / 2 + 5) text-anchor="end" { (b.label) }
                    rect.bar x=(L.label_width) y=(y + 4) height=(L.row_height - 8) width=(format!("{:.1}", x(b.value) - f64::from(L.label_width))) {}
                    text.value x=(format!("{:.1}", x(b.value) + 6.0)) y=(y + L.row_height / 2 + 5) { (number(b.value)) }
                }
            }
            line.axis x1=(L.label_width) y1=(axis_y) x2=(L.width - L.value_width) y2=(axis_y) {}
            @for t in 0..=ticks {
                @let v = top * f64::from(t) / f64::from(ticks);
                line.tick x1=(format!("{:.1}", x(v))) y1=(axis_y) x2=(format!("{:.1}", x(v))) y2=(axis_y + 5) {}
                text.tick-label x=(format!("{:.1}", x(v))) y=(axis_y + 20) text-anchor="middle" { (number(v)) }
            }
            text.unit x=(L.width - L.value_width + 8) y=(axis_y + 20) { (unit) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_axis_ends_on_a_round_number_at_or_above_the_largest_bar() {
        for (max, want) in [(0.0, 1.0), (1.0, 1.0), (3.0, 5.0), (7.0, 10.0), (12.0, 20.0), (250.0, 500.0), (0.3, 0.5)] {
            assert!((nice_max(max) - want).abs() < 1e-9, "{max} -> {}", nice_max(max));
        }
        assert_eq!(number(3.0), "3");
        assert_eq!(number(2.25), "2.2");
    }

    #[test]
    fn bars_are_proportional_labelled_and_titled() {
        let data = vec![Bar { label: "started".into(), value: 4.0 }, Bar { label: "approved".into(), value: 1.0 }];
        let svg = bars("f", "KYC funnel", "cases", &data).into_string();
        assert!(svg.contains(r#"role="img""#) && svg.contains(r#"aria-labelledby="f-title f-desc""#), "{svg}");
        assert!(svg.contains("<title id=\"f-title\">KYC funnel</title>"));
        assert!(svg.contains("<title>approved: 1 cases</title>"));
        // Axis to 5: the plot is 440 wide, so 4 → 352 and 1 → 88.
        assert!(svg.contains(r#"width="352.0""#) && svg.contains(r#"width="88.0""#), "{svg}");
        assert!(!svg.contains("style="), "the CSP allows no inline style");
        let many: Vec<Bar> = (0..100).map(|i| Bar { label: i.to_string(), value: 1.0 }).collect();
        assert_eq!(bars("m", "many", "x", &many).into_string().matches("<rect").count(), BARS_MAX);
        assert!(bars("e", "empty", "x", &[]).into_string().contains("No data yet."));
        // One case: ticks 0 and 1 only.
        let one = bars("o", "one", "cases", &[Bar { label: "a".into(), value: 1.0 }]).into_string();
        assert_eq!(one.matches(r#"class="tick-label""#).count(), 2, "{one}");
    }
}
