//! Label and field selectors in the syntax of the `labelSelector` and
//! `fieldSelector` query parameters.

/// A conjunction of requirements; the empty selector matches everything.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Selector(Vec<Requirement>);

#[derive(Debug, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

#[derive(Debug, PartialEq)]
enum Op {
    Exists,
    NotExists,
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    GreaterThan(i64),
    LessThan(i64),
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Equals,
    NotEquals,
    Bang,
    Open,
    Close,
    Comma,
    Greater,
    Less,
}

/// The only fields the API server can select on for the types served here.
const SELECTABLE_FIELDS: [&str; 2] = ["metadata.name", "metadata.namespace"];

impl Selector {
    /// Parses a label selector: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`,
    /// `a`, `!a`, `a>1`, `a<1`, joined by commas.
    pub(crate) fn parse_labels(text: &str) -> Result<Self, String> {
        let tokens = lex(text);
        let mut tokens = tokens.into_iter().peekable();
        let mut requirements = Vec::new();
        while tokens.peek().is_some() {
            requirements.push(requirement(&mut tokens)?);
            match tokens.next() {
                None | Some(Token::Comma) => {}
                Some(other) => return Err(format!("unexpected {other:?} in selector {text:?}")),
            }
        }
        Ok(Selector(requirements))
    }

    /// Parses a field selector: equality and inequality on `metadata.name` and `metadata.namespace`.
    pub(crate) fn parse_fields(text: &str) -> Result<Self, String> {
        let selector = Self::parse_labels(text)?;
        for r in &selector.0 {
            if !SELECTABLE_FIELDS.contains(&r.key.as_str()) {
                return Err(format!("field label not supported: {}", r.key));
            }
            if !matches!(r.op, Op::Equals(_) | Op::NotEquals(_)) {
                return Err(format!("invalid field selector operator for {}", r.key));
            }
        }
        Ok(selector)
    }

    /// `lookup` returns the value of a label (or field), `None` when absent.
    pub(crate) fn matches<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.0.iter().all(|r| {
            let value = lookup(&r.key);
            match &r.op {
                Op::Exists => value.is_some(),
                Op::NotExists => value.is_none(),
                Op::Equals(wanted) => value == Some(wanted.as_str()),
                Op::NotEquals(unwanted) => value != Some(unwanted.as_str()),
                Op::In(set) => value.is_some_and(|v| set.iter().any(|s| s == v)),
                Op::NotIn(set) => !value.is_some_and(|v| set.iter().any(|s| s == v)),
                Op::GreaterThan(bound) => number(value).is_some_and(|n| n > *bound),
                Op::LessThan(bound) => number(value).is_some_and(|n| n < *bound),
            }
        })
    }
}

fn number(value: Option<&str>) -> Option<i64> {
    value?.parse().ok()
}

fn lex(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let token = match c {
            c if c.is_whitespace() => continue,
            '(' => Token::Open,
            ')' => Token::Close,
            ',' => Token::Comma,
            '>' => Token::Greater,
            '<' => Token::Less,
            '=' => {
                chars.next_if_eq(&'=');
                Token::Equals
            }
            '!' if chars.next_if_eq(&'=').is_some() => Token::NotEquals,
            '!' => Token::Bang,
            _ => {
                let mut word = c.to_string();
                while let Some(c) = chars.next_if(|c| !c.is_whitespace() && !"()=!<>,".contains(*c)) {
                    word.push(c);
                }
                Token::Word(word)
            }
        };
        tokens.push(token);
    }
    tokens
}

type Tokens = std::iter::Peekable<std::vec::IntoIter<Token>>;

fn requirement(tokens: &mut Tokens) -> Result<Requirement, String> {
    let negated = tokens.next_if_eq(&Token::Bang).is_some();
    let key = match tokens.next() {
        Some(Token::Word(key)) => key,
        other => return Err(format!("expected a key, found {other:?}")),
    };
    if negated {
        return Ok(Requirement { key, op: Op::NotExists });
    }
    let op = match tokens.next_if(|t| *t != Token::Comma) {
        None => Op::Exists,
        Some(Token::Equals) => Op::Equals(optional_word(tokens)),
        Some(Token::NotEquals) => Op::NotEquals(optional_word(tokens)),
        Some(Token::Greater) => Op::GreaterThan(integer(tokens)?),
        Some(Token::Less) => Op::LessThan(integer(tokens)?),
        Some(Token::Word(word)) if word == "in" => Op::In(set(tokens)?),
        Some(Token::Word(word)) if word == "notin" => Op::NotIn(set(tokens)?),
        Some(other) => return Err(format!("unexpected {other:?} after key {key:?}")),
    };
    Ok(Requirement { key, op })
}

/// `a=` selects the empty value.
fn optional_word(tokens: &mut Tokens) -> String {
    match tokens.next_if(|t| matches!(t, Token::Word(_))) {
        Some(Token::Word(word)) => word,
        _ => String::new(),
    }
}

fn integer(tokens: &mut Tokens) -> Result<i64, String> {
    match tokens.next() {
        Some(Token::Word(word)) => word.parse().map_err(|_| format!("{word:?} is not an integer")),
        other => Err(format!("expected an integer, found {other:?}")),
    }
}

fn set(tokens: &mut Tokens) -> Result<Vec<String>, String> {
    if tokens.next() != Some(Token::Open) {
        return Err("expected '(' after in/notin".to_string());
    }
    let mut values = Vec::new();
    loop {
        values.push(optional_word(tokens));
        match tokens.next() {
            Some(Token::Comma) => {}
            Some(Token::Close) => break,
            other => return Err(format!("expected ',' or ')' in value set, found {other:?}")),
        }
    }
    if values.iter().all(String::is_empty) {
        return Err("for 'in', 'notin' operators, values set can't be empty".to_string());
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selects(selector: &str, labels: &[(&str, &str)]) -> bool {
        Selector::parse_labels(selector)
            .unwrap()
            .matches(|key| labels.iter().find(|(k, _)| *k == key).map(|(_, v)| *v))
    }

    #[test]
    fn equality_forms() {
        let labels = [("app", "gw"), ("tier", "edge")];
        assert!(selects("app=gw", &labels));
        assert!(selects("app==gw", &labels));
        assert!(selects("app = gw , tier=edge", &labels));
        assert!(!selects("app=gw,tier=core", &labels));
        assert!(selects("app!=other", &labels));
        assert!(!selects("app!=gw", &labels));
        assert!(selects("missing!=x", &labels), "!= also matches an absent label");
    }

    #[test]
    fn set_forms() {
        let labels = [("env", "prod")];
        assert!(selects("env in (dev,prod)", &labels));
        assert!(selects("env in(prod)", &labels));
        assert!(!selects("env in (dev, qa)", &labels));
        assert!(selects("env notin (dev,qa)", &labels));
        assert!(!selects("env notin (prod)", &labels));
        assert!(selects("other notin (prod)", &labels), "notin matches an absent label");
        assert!(!selects("other in (prod)", &labels));
    }

    #[test]
    fn existence_and_numbers() {
        let labels = [("canary", ""), ("weight", "10")];
        assert!(selects("canary", &labels));
        assert!(selects("!stable", &labels));
        assert!(!selects("!canary", &labels));
        assert!(selects("canary=", &labels));
        assert!(selects("weight>5,weight<11", &labels));
        assert!(!selects("weight>10", &labels));
        assert!(selects("", &labels));
    }

    #[test]
    fn rejects_malformed_selectors() {
        for bad in ["=x", "a in x", "a in ()", "a in (x", "a b", "!", "a>b", "a,,b"] {
            assert!(Selector::parse_labels(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn field_selectors_accept_only_name_and_namespace_equality() {
        let selector = Selector::parse_fields("metadata.name=x,metadata.namespace!=y").unwrap();
        assert!(selector.matches(|key| Some(if key == "metadata.name" { "x" } else { "z" })));
        assert!(Selector::parse_fields("spec.x=1").is_err());
        assert!(Selector::parse_fields("metadata.name in (x)").is_err());
    }
}
