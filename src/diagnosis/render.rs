//! A `CheckReport` for people: the one-line verdict, the terminal text and
//! the Markdown the page exports (the page renders the JSON itself).

use super::{CheckReport, Verdict};
use crate::human::human_bytes;

/// One-line verdict: "Loads" or "Won't load: 0 missing, 144 unexpected, 153 size mismatches".
pub fn verdict_line(report: &CheckReport) -> String {
    // An adapter is never called a model that loads: it applies.
    let loads = if report.loader == crate::loader::Loader::Peft {
        "Adapter applies"
    } else {
        "Loads"
    };
    if report.loads && !report.warnings.is_empty() {
        format!("{loads}, but {}", report.warnings.join("; "))
    } else if report.loads {
        loads.to_string()
    } else {
        format!(
            "{}: {} missing, {} unexpected, {} size mismatches",
            if report.loader == crate::loader::Loader::Peft {
                "Adapter won't load"
            } else {
                "Won't load"
            },
            report.missing_keys.len(),
            report.unexpected_keys.len(),
            report.size_mismatches.len()
        )
    }
}

/// The report as Markdown: verdict, why, fix, notes, PyTorch's text.
pub fn to_markdown(report: &CheckReport) -> String {
    let mut out = String::new();
    out.push_str(&format!("# ckptcheck: {}\n\n", verdict_line(report)));
    out.push_str(&format!(
        "- checkpoint: `{}` ({}, {}, {} read)\n- model: `{}` ({}), loader `{}`\n",
        report.file,
        report.format,
        human_bytes(report.file_bytes),
        human_bytes(report.bytes_read),
        report.model,
        report.model_family,
        report.loader.name()
    ));
    if let Some(preset) = &report.inferred.preset {
        out.push_str(&format!("- the checkpoint matches the preset `{preset}`\n"));
    }
    if let Some(shaped) = &report.inferred.shaped_like {
        out.push_str(&format!("- the checkpoint is {shaped}\n"));
    }
    if !report.explanation.is_empty() {
        out.push_str("\n## Why\n\n");
        for cause in &report.explanation {
            out.push_str(&format!("- {}\n", cause.text));
        }
    }
    if let Some(fix) = &report.fix {
        out.push_str(&format!("\n## Fix\n\n{}\n", fix.summary));
        for remedy in &fix.remedies {
            out.push_str(&format!(
                "\n{}:\n\n```\n{}\n```\n",
                remedy.label, remedy.text
            ));
        }
    }
    if !report.notes.is_empty() {
        out.push_str("\n## Notes\n\n");
        for note in &report.notes {
            out.push_str(&format!("- {note}\n"));
        }
    }
    if !report.unsafe_globals.is_empty() {
        out.push_str(&format!(
            "\n**Unsafe pickle**: references {}\n",
            report.unsafe_globals.join(", ")
        ));
    }
    if let Some(table) = &report.load_report {
        out.push_str(&format!(
            "\n## What transformers logs\n\n```\n{table}\n```\n"
        ));
    }
    if let Some(error) = &report.pytorch_error {
        out.push_str(&format!("\n## What PyTorch says\n\n```\n{error}\n```\n"));
    }
    out
}

/// The report for a terminal: one screen, PyTorch's text shortened.
pub fn to_text(report: &CheckReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{} {}\n",
        match report.verdict {
            Verdict::Loads => "OK ",
            Verdict::LoadsWithWarnings => "WARN",
            Verdict::WontLoad => "ERR",
        },
        verdict_line(report)
    ));
    out.push_str(&format!(
        "    {} ({}, {}; read {}) into {} [{}], loader {}\n",
        report.file,
        report.format,
        human_bytes(report.file_bytes),
        human_bytes(report.bytes_read),
        report.model,
        report.model_family,
        report.loader.name()
    ));
    if let Some(preset) = &report.inferred.preset {
        out.push_str(&format!("    checkpoint matches preset {preset}\n"));
    }
    if !report.explanation.is_empty() {
        out.push_str("why:\n");
        for cause in &report.explanation {
            out.push_str(&format!("  - {}\n", cause.text));
        }
    }
    if let Some(fix) = &report.fix {
        out.push_str(&format!("fix: {}\n", fix.summary));
        for remedy in &fix.remedies {
            out.push_str(&format!("  {}:\n", remedy.label));
            for line in remedy.text.lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    for note in &report.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    if !report.unsafe_globals.is_empty() {
        out.push_str(&format!(
            "UNSAFE pickle: references {} (never evaluated)\n",
            report.unsafe_globals.join(", ")
        ));
    }
    if let Some(table) = &report.load_report {
        let lines: Vec<&str> = table.lines().collect();
        out.push_str(if report.loader == crate::loader::Loader::Peft {
            "PEFT warns:\n"
        } else {
            "transformers logs:\n"
        });
        for line in lines.iter().take(12) {
            out.push_str(&format!("  {line}\n"));
        }
        if lines.len() > 12 {
            out.push_str(&format!(
                "  ... {} more lines (--json has the full report)\n",
                lines.len() - 12
            ));
        }
    }
    if let Some(error) = &report.pytorch_error {
        let lines: Vec<&str> = error.lines().collect();
        out.push_str("pytorch says:\n");
        for line in lines.iter().take(6) {
            let shown: String = line.chars().take(200).collect();
            out.push_str(&format!(
                "  {shown}{}\n",
                if line.chars().count() > 200 {
                    " ..."
                } else {
                    ""
                }
            ));
        }
        if lines.len() > 6 {
            out.push_str(&format!(
                "  ... {} more lines (--json has the full text)\n",
                lines.len() - 6
            ));
        }
    }
    out
}
