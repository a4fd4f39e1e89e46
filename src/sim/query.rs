//! The filter language of EM's query service: `field<op>value`, `;` for AND, `,` for OR,
//! parentheses to group, double quotes around values with spaces (a quote doubled inside).
//! Field names compare case-insensitively; values case-insensitively, numerically where both
//! sides are numbers, and UIDs match their bare guid.

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare {
        field: String,
        op: Op,
        value: String,
    },
    And(Vec<Filter>),
    Or(Vec<Filter>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

pub fn parse(text: &str) -> Result<Filter, String> {
    let mut p = Parser {
        chars: text.chars().collect(),
        at: 0,
    };
    let filter = p.or()?;
    if p.at != p.chars.len() {
        return Err(format!("Unexpected [{}] in the filter.", p.rest()));
    }
    Ok(filter)
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn rest(&self) -> String {
        self.chars[self.at..].iter().collect()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut parts = vec![self.and()?];
        while self.peek() == Some(',') {
            self.at += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Filter::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut parts = vec![self.atom()?];
        while self.peek() == Some(';') {
            self.at += 1;
            parts.push(self.atom()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Filter::And(parts)
        })
    }

    fn atom(&mut self) -> Result<Filter, String> {
        if self.peek() == Some('(') {
            self.at += 1;
            let inner = self.or()?;
            if self.peek() != Some(')') {
                return Err("A parenthesis in the filter is not closed.".into());
            }
            self.at += 1;
            return Ok(inner);
        }
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            self.at += 1;
        }
        let field: String = self.chars[start..self.at].iter().collect();
        if field.is_empty() {
            return Err(format!("Expected a field name at [{}].", self.rest()));
        }
        let two: String = self.chars[self.at..].iter().take(2).collect();
        let (op, len) = match two.as_str() {
            "==" => (Op::Eq, 2),
            "!=" => (Op::Ne, 2),
            "<=" => (Op::Le, 2),
            ">=" => (Op::Ge, 2),
            s if s.starts_with('<') => (Op::Lt, 1),
            s if s.starts_with('>') => (Op::Gt, 1),
            _ => return Err(format!("Expected an operator after [{field}].")),
        };
        self.at += len;
        let value = self.value()?;
        Ok(Filter::Compare { field, op, value })
    }

    fn value(&mut self) -> Result<String, String> {
        let mut out = String::new();
        if self.peek() == Some('"') {
            self.at += 1;
            loop {
                match self.peek() {
                    None => return Err("A quoted value in the filter is not closed.".into()),
                    Some('"') if self.chars.get(self.at + 1) == Some(&'"') => {
                        out.push('"');
                        self.at += 2;
                    }
                    Some('"') => {
                        self.at += 1;
                        return Ok(out);
                    }
                    Some(c) => {
                        out.push(c);
                        self.at += 1;
                    }
                }
            }
        }
        while let Some(c) = self.peek() {
            if matches!(c, ';' | ',' | ')') {
                break;
            }
            out.push(c);
            self.at += 1;
        }
        Ok(out)
    }
}

/// A record the filter looks at: field name and value, as EM's query fields.
pub type Record = Vec<(&'static str, String)>;

pub fn matches(filter: &Filter, record: &Record) -> bool {
    match filter {
        Filter::And(parts) => parts.iter().all(|p| matches(p, record)),
        Filter::Or(parts) => parts.iter().any(|p| matches(p, record)),
        Filter::Compare { field, op, value } => {
            let Some((_, actual)) = record.iter().find(|(f, _)| f.eq_ignore_ascii_case(field))
            else {
                return false;
            };
            let ordering = compare(actual, value);
            match op {
                Op::Eq => ordering.is_eq(),
                Op::Ne => !ordering.is_eq(),
                Op::Lt => ordering.is_lt(),
                Op::Gt => ordering.is_gt(),
                Op::Le => ordering.is_le(),
                Op::Ge => ordering.is_ge(),
            }
        }
    }
}

pub fn compare(actual: &str, wanted: &str) -> std::cmp::Ordering {
    if let (Ok(a), Ok(b)) = (actual.parse::<f64>(), wanted.parse::<f64>()) {
        return a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal);
    }
    let bare = |s: &str| {
        if s.starts_with("urn:veeam:") {
            s.rsplit(':').next().unwrap_or(s).to_ascii_lowercase()
        } else {
            s.to_ascii_lowercase()
        }
    };
    bare(actual).cmp(&bare(wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        vec![
            ("Name", "EU pool".into()),
            ("BackupServerUid", "urn:veeam:BackupServer:abc".into()),
            ("Port", "9392".into()),
        ]
    }

    #[test]
    fn filters_and_or_and_group() {
        let r = record();
        assert!(matches(&parse(r#"name=="eu pool""#).unwrap(), &r));
        assert!(matches(
            &parse("BackupServerUId==abc;Port>9000").unwrap(),
            &r
        ));
        assert!(!matches(&parse("Port<9000;Name==x").unwrap(), &r));
        assert!(matches(
            &parse("(Port<9000,Name==\"EU pool\");Port>=9392").unwrap(),
            &r
        ));
        assert!(matches(&parse("Name!=other").unwrap(), &r));
        assert!(!matches(&parse("Missing==x").unwrap(), &r));
    }

    #[test]
    fn rejects_broken_filters() {
        for bad in ["", "Name", "(Name==x", "Name==\"x", "Name==x)"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
