//! The scan report for a terminal: problems first, then one line per
//! tensor (the page renders the JSON itself).

use super::ScanReport;

/// The report as text: problems first, then one line per tensor.
pub fn to_text(report: &ScanReport) -> String {
    let summary = &report.summary;
    let mut out = format!(
        "{}: {} tensors, {} scanned ({})\n",
        report.files.join(", "),
        summary.tensors,
        summary.scanned,
        crate::human::human_bytes(report.bytes_scanned)
    );
    if report.ok {
        out.push_str("OK  no NaN, no Inf, no all-zero floating-point tensor\n");
    } else {
        out.push_str(&format!(
            "ERR {} NaN and {} Inf values in {} tensors; {} all-zero tensors\n",
            summary.nan_values,
            summary.inf_values,
            report
                .tensors
                .iter()
                .filter(|t| t.scanned && (t.nan > 0 || t.inf > 0))
                .count(),
            summary.all_zero.len()
        ));
        for problem in &summary.problems {
            out.push_str(&format!("  {problem}\n"));
        }
    }
    for skipped in &summary.skipped {
        out.push_str(&format!("  skipped {skipped}\n"));
    }
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.6e}"));
    out.push_str(&format!(
        "  {:<56} {:>8} {:>6} {:>6} {:>13} {:>13} {:>13} {:>13}\n",
        "tensor", "dtype", "nan", "inf", "min", "max", "mean", "std"
    ));
    for tensor in report.tensors.iter().filter(|t| t.scanned) {
        out.push_str(&format!(
            "  {:<56} {:>8} {:>6} {:>6} {:>13} {:>13} {:>13} {:>13}{}\n",
            tensor.display_name(),
            tensor.dtype,
            tensor.nan,
            tensor.inf,
            fmt(tensor.min),
            fmt(tensor.max),
            fmt(tensor.mean),
            fmt(tensor.std),
            if tensor.all_zero { "  all zero" } else { "" }
        ));
        if let Some(note) = &tensor.note {
            out.push_str(&format!("      {note}\n"));
        }
    }
    out
}
