//! Text tables and JSON output shared by subcommands.

use std::io::Write;

use anyhow::Context;

/// Print `value` as pretty JSON on stdout, followed by a newline.
pub fn print_json<T: serde::Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("encoding JSON")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").context("writing to stdout")?;
    Ok(())
}

/// Rows of cells printed with every column padded to its widest cell.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// Widest cell of each column, counted in chars (the glyphs we print are one column wide).
    pub fn widths(&self) -> Vec<usize> {
        let mut w: Vec<usize> = Vec::new();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                let len = cell.chars().count();
                match w.get_mut(i) {
                    Some(x) => *x = (*x).max(len),
                    None => w.push(len),
                }
            }
        }
        w
    }

    /// One line per row, columns separated by two spaces, no trailing blanks.
    pub fn render_rows(&self, widths: &[usize]) -> Vec<String> {
        self.rows.iter().map(|row| pad_row(row, widths)).collect()
    }

    pub fn render(&self) -> String {
        let w = self.widths();
        let mut s = String::new();
        for line in self.render_rows(&w) {
            s.push_str(&line);
            s.push('\n');
        }
        s
    }
}

/// Pad each cell of `row` to `widths`, two spaces between columns.
pub fn pad_row(row: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (i, cell) in row.iter().enumerate() {
        if i > 0 {
            line.push_str("  ");
        }
        line.push_str(cell);
        let want = widths.get(i).copied().unwrap_or(0);
        let have = cell.chars().count();
        if want > have {
            line.push_str(&" ".repeat(want - have));
        }
    }
    line.trim_end().to_string()
}

/// Print text on stdout (ignoring a closed pipe, as `macvnet ls | head` should not fail loudly).
pub fn print_text(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new();
        t.push(vec!["a".into(), "bbb".into(), "c".into()]);
        t.push(vec!["├─ long".into(), "b".into(), "".into()]);
        assert_eq!(t.render(), "a        bbb  c\n├─ long  b\n");
    }
}
