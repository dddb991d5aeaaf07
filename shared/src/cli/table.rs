//! Plain-text tables for people: left-aligned columns two spaces apart, widths in characters, no
//! trailing spaces. Scripts use `--json`, so nothing here needs to be machine-stable.

use std::io::{self, Write};

pub struct Table {
    header: Option<Vec<&'static str>>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table whose first line names its columns.
    pub fn new(header: &[&'static str]) -> Self {
        Table {
            header: Some(header.to_vec()),
            rows: Vec::new(),
        }
    }

    /// Aligned `name  value` lines without a header line.
    pub fn fields() -> Self {
        Table {
            header: None,
            rows: Vec::new(),
        }
    }

    /// Adds a row; a line break inside a cell becomes a space, so a row stays one line.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(
            cells
                .into_iter()
                .map(|c| c.into().replace(['\r', '\n'], " "))
                .collect(),
        );
    }

    /// Writes the table, or the line `empty` when it has no row.
    pub fn write(&self, out: &mut dyn Write, empty: &str) -> io::Result<()> {
        if self.rows.is_empty() {
            return writeln!(out, "{empty}");
        }
        let header: Option<Vec<String>> = self
            .header
            .as_ref()
            .map(|h| h.iter().map(|c| c.to_string()).collect());
        let lines: Vec<&Vec<String>> = header.iter().chain(&self.rows).collect();
        let columns = lines.iter().map(|l| l.len()).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|i| {
                lines
                    .iter()
                    .filter_map(|l| l.get(i))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for line in lines {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                text.push_str(cell);
                let pad = widths[i].saturating_sub(cell.chars().count());
                text.extend(std::iter::repeat_n(' ', pad));
            }
            writeln!(out, "{}", text.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &Table) -> String {
        let mut out = Vec::new();
        t.write(&mut out, "nothing").unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn columns_align_on_the_widest_cell_in_characters() {
        let mut t = Table::new(&["ID", "CHANGE", "NOTE"]);
        t.row(["a", "128 → 256", "x"]);
        t.row(["long-id", "1", ""]);
        assert_eq!(
            text(&t),
            "ID       CHANGE     NOTE\n\
             a        128 → 256  x\n\
             long-id  1\n"
        );
    }

    #[test]
    fn fields_have_no_header_and_an_empty_table_says_so() {
        let mut t = Table::fields();
        t.row(["State", "APPROVED"]);
        t.row(["Decided by", "line one\nline two"]);
        assert_eq!(
            text(&t),
            "State       APPROVED\nDecided by  line one line two\n"
        );
        assert_eq!(text(&Table::new(&["ID"])), "nothing\n");
    }
}
