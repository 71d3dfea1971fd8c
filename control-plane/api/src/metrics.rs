//! A writer for the Prometheus text exposition format (0.0.4): families
//! with HELP and TYPE, samples with escaped label values.

use std::fmt::Write;

/// Metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic, named `..._total`.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// Builds one exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
    current: Option<String>,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family: its HELP and TYPE lines. Samples follow with
    /// [`Self::sample`].
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let t = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {t}");
        self.current = Some(name.to_string());
    }

    /// A sample of the current family.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        let Some(name) = &self.current else {
            return;
        };
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        if value.fract() == 0.0 && value.abs() < 9.0e15 {
            let _ = writeln!(self.out, " {}", value as i64);
        } else {
            let _ = writeln!(self.out, " {value}");
        }
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(&[], value);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_escaped_labels() {
        let mut e = Exposition::new();
        e.family("sluice_x_total", Kind::Counter, "Things.\nMore");
        e.sample(&[("conn", "a\"b\\c\nd"), ("dir", "in")], 3.0);
        e.single("sluice_up", Kind::Gauge, "Up.", 0.5);
        let t = e.finish();
        assert_eq!(
            t,
            "# HELP sluice_x_total Things.\\nMore\n# TYPE sluice_x_total counter\n\
             sluice_x_total{conn=\"a\\\"b\\\\c\\nd\",dir=\"in\"} 3\n\
             # HELP sluice_up Up.\n# TYPE sluice_up gauge\nsluice_up 0.5\n"
        );
    }
}
