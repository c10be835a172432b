//! ConfigHub's `where` expressions: `attr op literal` terms joined by `AND` only.
//!
//! The grammar (`../reference/confighub-api.md` §2.2):
//!
//! ```text
//! expr     := term ( AND term )*
//! term     := attr op operand [IS [NOT] (TRUE|FALSE)]  -- `X = '<uuid>' IS NOT FALSE`: equal or NULL
//!           | attr [NOT] IN '(' literal ( ',' literal )* ')'
//!           | attr IS [NOT] NULL | attr IS [NOT] TRUE | attr IS [NOT] FALSE
//!           | attr '?' literal                       -- an array contains a value
//!           | LEN '(' attr ')' op integer            -- an array's length
//! op       := = | != | < | > | <= | >= | LIKE | NOT LIKE | ILIKE | ~~ | !~~ | ~ | ~* | !~ | !~*
//! operand  := literal | attr                         -- `UpstreamUnit.HeadRevisionNum`
//! literal  := 'text' (no quote inside: the grammar has no escape) | integer | true | false
//! attr     := PascalCase names joined by dots; `*` between entity names reaches every element of a
//!             list of entities (`FromLink.*.Slug`); after a map field (`Labels.`, `Annotations.`,
//!             `ValidationErrors.`, ...) the rest is a key
//! ```
//!
//! [`check`] also holds a clause to the attributes an entity accepts today (v0.8.5): removed ones
//! (`LiveRevisionNum`, `LastAppliedRevisionNum`, `SetID`, ...) are refused before anything is sent.
//!
//! The client parses every clause before sending it, so a malformed clause fails at once with the
//! position and the reason instead of as a 400 from the server. With the `fake` feature the same parse
//! tree is evaluated by the fake hub.

use std::fmt;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `>=`
    Ge,
    /// `LIKE` or `~~`
    Like,
    /// `NOT LIKE` or `!~~`
    NotLike,
    /// `ILIKE`
    ILike,
    /// `~` (regex)
    Regex,
    /// `~*` (case-insensitive regex)
    IRegex,
    /// `!~`
    NotRegex,
    /// `!~*`
    NotIRegex,
}

impl Op {
    /// The operator as written.
    pub fn as_str(&self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Ge => ">=",
            Op::Like => "LIKE",
            Op::NotLike => "NOT LIKE",
            Op::ILike => "ILIKE",
            Op::Regex => "~",
            Op::IRegex => "~*",
            Op::NotRegex => "!~",
            Op::NotIRegex => "!~*",
        }
    }

    /// Whether the operator only applies to strings.
    pub fn is_text_only(&self) -> bool {
        !matches!(self, Op::Eq | Op::Ne | Op::Lt | Op::Gt | Op::Le | Op::Ge)
    }
}

/// A literal.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Literal {
    /// `'text'`
    Str(String),
    /// `42`
    Int(i64),
    /// `true` / `false`
    Bool(bool),
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Str(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operand {
    /// A literal.
    Literal(Literal),
    /// Another attribute.
    Attr(Attr),
}

/// An attribute path: `Slug`, `Labels.tier`, `Space.Labels.environment`, `UpstreamUnit.HeadRevisionNum`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Entity prefixes and the field (`["Space", "Labels"]`).
    pub path: Vec<String>,
    /// The map key after `Labels.` / `Annotations.` (`tier`), if any.
    pub key: Option<String>,
}

impl fmt::Display for Attr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path.join("."))?;
        if let Some(k) = &self.key {
            write!(f, ".{k}")?;
        }
        Ok(())
    }
}

/// One term.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Term {
    /// `attr op operand`
    Compare {
        /// Attribute.
        attr: Attr,
        /// Operator.
        op: Op,
        /// Operand.
        rhs: Operand,
    },
    /// `attr [NOT] IN (...)`
    In {
        /// Attribute.
        attr: Attr,
        /// Negated.
        negated: bool,
        /// The values.
        values: Vec<Literal>,
    },
    /// `attr IS [NOT] NULL`
    IsNull {
        /// Attribute.
        attr: Attr,
        /// `IS NOT NULL`.
        negated: bool,
    },
    /// `attr IS [NOT] TRUE|FALSE`
    IsBool {
        /// Attribute.
        attr: Attr,
        /// `IS NOT`.
        negated: bool,
        /// Which.
        value: bool,
    },
    /// `comparison IS [NOT] TRUE|FALSE`: the comparison's result tested (NULL is neither true nor false).
    Tested {
        /// The comparison.
        term: Box<Term>,
        /// `IS NOT`.
        negated: bool,
        /// Which.
        value: bool,
    },
    /// `attr ? literal`
    Contains {
        /// Attribute (an array).
        attr: Attr,
        /// The value.
        value: Literal,
    },
    /// `LEN(attr) op n`
    Len {
        /// Attribute (an array).
        attr: Attr,
        /// Operator.
        op: Op,
        /// The length.
        value: i64,
    },
}

/// A parsed where-clause: the terms, all of which must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhereClause {
    /// Terms, AND-joined.
    pub terms: Vec<Term>,
}

/// Why a clause does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid where clause {clause:?} at character {position}: {reason}")]
pub struct WhereError {
    /// The clause.
    pub clause: String,
    /// Character offset of the problem.
    pub position: usize,
    /// What is wrong.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Op(Op),
    LParen,
    RParen,
    Comma,
    Question,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | '*')
}

fn tokenize(s: &str) -> Result<Vec<(usize, Tok)>, (usize, String)> {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        match c {
            '(' => {
                out.push((pos, Tok::LParen));
                i += 1;
            }
            ')' => {
                out.push((pos, Tok::RParen));
                i += 1;
            }
            ',' => {
                out.push((pos, Tok::Comma));
                i += 1;
            }
            '?' => {
                out.push((pos, Tok::Question));
                i += 1;
            }
            '\'' => {
                let mut text = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err((pos, "unterminated string literal".into())),
                        Some((q, '\'')) if matches!(chars.get(i + 1), Some((_, '\''))) => {
                            return Err((
                                *q,
                                "a string literal cannot hold a single quote: the grammar has no escape"
                                    .into(),
                            ));
                        }
                        Some((_, '\'')) => {
                            i += 1;
                            break;
                        }
                        Some((_, ch)) => {
                            text.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push((pos, Tok::Str(text)));
            }
            '"' => return Err((pos, "string literals use single quotes".into())),
            '=' => {
                out.push((pos, Tok::Op(Op::Eq)));
                i += 1;
            }
            '<' | '>' => {
                let eq = matches!(chars.get(i + 1), Some((_, '=')));
                let op = match (c, eq) {
                    ('<', true) => Op::Le,
                    ('<', false) => Op::Lt,
                    ('>', true) => Op::Ge,
                    _ => Op::Gt,
                };
                if c == '<' && matches!(chars.get(i + 1), Some((_, '>'))) {
                    return Err((pos, "use != for not-equal".into()));
                }
                out.push((pos, Tok::Op(op)));
                i += if eq { 2 } else { 1 };
            }
            '!' => {
                let rest: String = chars[i..].iter().take(3).map(|(_, c)| *c).collect();
                let (op, len) = if rest.starts_with("!~~") {
                    (Op::NotLike, 3)
                } else if rest.starts_with("!~*") {
                    (Op::NotIRegex, 3)
                } else if rest.starts_with("!~") {
                    (Op::NotRegex, 2)
                } else if rest.starts_with("!=") {
                    (Op::Ne, 2)
                } else {
                    return Err((pos, "unexpected '!'".into()));
                };
                out.push((pos, Tok::Op(op)));
                i += len;
            }
            '~' => {
                let (op, len) = match chars.get(i + 1).map(|(_, c)| *c) {
                    Some('~') => (Op::Like, 2),
                    Some('*') => (Op::IRegex, 2),
                    _ => (Op::Regex, 1),
                };
                out.push((pos, Tok::Op(op)));
                i += len;
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(|(_, d)| d.is_ascii_digit())) =>
            {
                let start = i;
                i += 1;
                while chars.get(i).is_some_and(|(_, d)| d.is_ascii_digit()) {
                    i += 1;
                }
                let text: String = chars[start..i].iter().map(|(_, c)| *c).collect();
                let n = text
                    .parse::<i64>()
                    .map_err(|_| (pos, format!("number {text} is out of range")))?;
                out.push((pos, Tok::Int(n)));
            }
            c if is_ident_start(c) => {
                let start = i;
                while chars.get(i).is_some_and(|(_, d)| is_ident_char(*d)) {
                    i += 1;
                }
                let text: String = chars[start..i].iter().map(|(_, c)| *c).collect();
                out.push((pos, Tok::Ident(text)));
            }
            other => return Err((pos, format!("unexpected character {other:?}"))),
        }
    }
    Ok(out)
}

/// Map-valued fields: after them, the rest of the dotted name is a key.
const MAP_FIELDS: &[&str] = &[
    "Labels",
    "Annotations",
    "ApplyGates",
    "ApplyWarnings",
    "ValidationErrors",
    "ValidationWarnings",
    "ValidationResults",
    "ValidationTriggerIDs",
    "ValueTriggerIDs",
    "Values",
    "DeleteGates",
    "DestroyGates",
    "Facts",
    "Permissions",
    "PathAnnotations",
    "Conflicts",
];

fn attr_from(text: &str) -> Result<Attr, String> {
    let mut path = Vec::new();
    let mut rest = text;
    loop {
        let (head, tail) = match rest.split_once('.') {
            Some((h, t)) => (h, Some(t)),
            None => (rest, None),
        };
        let star = head == "*" && !path.is_empty() && tail.is_some_and(|t| !t.is_empty());
        if !star
            && (head.is_empty()
                || !head.starts_with(|c: char| c.is_ascii_uppercase())
                || !head.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return Err(format!(
                "{text:?} is not an attribute (attributes are PascalCase names such as Slug or Labels.tier)"
            ));
        }
        path.push(head.to_string());
        if MAP_FIELDS.contains(&head) {
            return match tail {
                Some(k) if !k.is_empty() => Ok(Attr {
                    path,
                    key: Some(k.to_string()),
                }),
                _ => Ok(Attr { path, key: None }),
            };
        }
        match tail {
            Some(t) => rest = t,
            None => return Ok(Attr { path, key: None }),
        }
    }
}

struct Parser<'a> {
    clause: &'a str,
    toks: Vec<(usize, Tok)>,
    i: usize,
}

impl Parser<'_> {
    fn err(&self, reason: impl Into<String>) -> WhereError {
        let position = self.toks.get(self.i).map_or(self.clause.len(), |(p, _)| *p);
        WhereError {
            clause: self.clause.to_string(),
            position,
            reason: reason.into(),
        }
    }
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|(_, t)| t)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.i).map(|(_, t)| t.clone());
        self.i += 1;
        t
    }
    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(w)) if w.eq_ignore_ascii_case(word))
    }
    fn expect_keyword(&mut self, word: &str) -> Result<(), WhereError> {
        if self.keyword(word) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(format!("expected {word}")))
        }
    }

    fn text_literal(&mut self, op: Op) -> Result<Literal, WhereError> {
        match self.literal()? {
            l @ Literal::Str(_) => Ok(l),
            _ => {
                self.i -= 1;
                Err(self.err(format!("{} takes a string literal", op.as_str())))
            }
        }
    }

    fn literal(&mut self) -> Result<Literal, WhereError> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Literal::Str(s)),
            Some(Tok::Int(n)) => Ok(Literal::Int(n)),
            Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("true") => Ok(Literal::Bool(true)),
            Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("false") => Ok(Literal::Bool(false)),
            _ => {
                self.i -= 1;
                Err(self.err("expected a literal: 'text', a number, true or false"))
            }
        }
    }

    fn attr(&mut self) -> Result<Attr, WhereError> {
        match self.next() {
            Some(Tok::Ident(text)) => attr_from(&text).map_err(|r| {
                self.i -= 1;
                self.err(r)
            }),
            _ => {
                self.i -= 1;
                Err(self.err("expected an attribute"))
            }
        }
    }

    fn term(&mut self) -> Result<Term, WhereError> {
        if self.keyword("LEN") && matches!(self.toks.get(self.i + 1), Some((_, Tok::LParen))) {
            self.i += 2;
            let attr = self.attr()?;
            if self.next() != Some(Tok::RParen) {
                self.i -= 1;
                return Err(self.err("expected ) after LEN(attribute"));
            }
            let op = match self.next() {
                Some(Tok::Op(op)) if !op.is_text_only() => op,
                _ => {
                    self.i -= 1;
                    return Err(self.err("LEN(...) is compared with = != < > <= >="));
                }
            };
            return match self.next() {
                Some(Tok::Int(value)) => Ok(Term::Len { attr, op, value }),
                _ => {
                    self.i -= 1;
                    Err(self.err("LEN(...) is compared with an integer"))
                }
            };
        }
        let attr = self.attr()?;
        if self.keyword("IS") {
            self.i += 1;
            let negated = if self.keyword("NOT") {
                self.i += 1;
                true
            } else {
                false
            };
            return match self.next() {
                Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("NULL") => Ok(Term::IsNull { attr, negated }),
                Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("TRUE") => Ok(Term::IsBool {
                    attr,
                    negated,
                    value: true,
                }),
                Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("FALSE") => Ok(Term::IsBool {
                    attr,
                    negated,
                    value: false,
                }),
                _ => {
                    self.i -= 1;
                    Err(self.err("expected NULL, NOT NULL, TRUE or FALSE after IS"))
                }
            };
        }
        if self.keyword("NOT") {
            self.i += 1;
            if self.keyword("IN") {
                self.i += 1;
                let values = self.list()?;
                return Ok(Term::In {
                    attr,
                    negated: true,
                    values,
                });
            }
            self.expect_keyword("LIKE")?;
            let rhs = self.text_literal(Op::NotLike)?;
            return Ok(Term::Compare {
                attr,
                op: Op::NotLike,
                rhs: Operand::Literal(rhs),
            });
        }
        if self.keyword("IN") {
            self.i += 1;
            let values = self.list()?;
            return Ok(Term::In {
                attr,
                negated: false,
                values,
            });
        }
        if self.keyword("LIKE") || self.keyword("ILIKE") {
            let op = if self.keyword("LIKE") { Op::Like } else { Op::ILike };
            self.i += 1;
            let rhs = self.text_literal(op)?;
            return Ok(Term::Compare {
                attr,
                op,
                rhs: Operand::Literal(rhs),
            });
        }
        if self.peek() == Some(&Tok::Question) {
            self.i += 1;
            let value = self.literal()?;
            return Ok(Term::Contains { attr, value });
        }
        if self.keyword("contains") {
            return Err(self.err("there is no `contains` operator: use `attr ? 'value'` for arrays, or `=`"));
        }
        let Some(Tok::Op(op)) = self.next() else {
            self.i -= 1;
            return Err(
                self.err("expected an operator (= != < > <= >= LIKE ILIKE ~~ !~~ ~ ~* !~ !~* IN IS ?)")
            );
        };
        let rhs = match self.peek() {
            Some(Tok::Ident(w)) if !w.eq_ignore_ascii_case("true") && !w.eq_ignore_ascii_case("false") => {
                Operand::Attr(self.attr()?)
            }
            _ => Operand::Literal(self.literal()?),
        };
        if op.is_text_only() && !matches!(rhs, Operand::Literal(Literal::Str(_))) {
            return Err(self.err(format!("{} takes a string literal", op.as_str())));
        }
        let term = Term::Compare { attr, op, rhs };
        if self.keyword("IS") {
            self.i += 1;
            let negated = if self.keyword("NOT") {
                self.i += 1;
                true
            } else {
                false
            };
            return match self.next() {
                Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("TRUE") || w.eq_ignore_ascii_case("FALSE") => {
                    Ok(Term::Tested {
                        term: Box::new(term),
                        negated,
                        value: w.eq_ignore_ascii_case("TRUE"),
                    })
                }
                _ => {
                    self.i -= 1;
                    Err(self.err("a comparison is tested with IS [NOT] TRUE or IS [NOT] FALSE"))
                }
            };
        }
        Ok(term)
    }

    fn list(&mut self) -> Result<Vec<Literal>, WhereError> {
        if self.next() != Some(Tok::LParen) {
            self.i -= 1;
            return Err(self.err("expected ( after IN"));
        }
        let mut values = vec![self.literal()?];
        loop {
            match self.next() {
                Some(Tok::Comma) => values.push(self.literal()?),
                Some(Tok::RParen) => return Ok(values),
                _ => {
                    self.i -= 1;
                    return Err(self.err("expected , or ) in the IN list"));
                }
            }
        }
    }
}

impl WhereClause {
    /// Parses a clause.
    ///
    /// # Errors
    /// A [`WhereError`] with the position and the reason.
    pub fn parse(clause: &str) -> Result<WhereClause, WhereError> {
        let toks = tokenize(clause).map_err(|(position, reason)| WhereError {
            clause: clause.to_string(),
            position,
            reason,
        })?;
        let mut p = Parser { clause, toks, i: 0 };
        if p.toks.is_empty() {
            return Err(p.err("the clause is empty"));
        }
        let mut terms = vec![p.term()?];
        while p.i < p.toks.len() {
            if p.keyword("OR") {
                return Err(p.err("OR is not supported: terms are joined with AND only"));
            }
            p.expect_keyword("AND")?;
            terms.push(p.term()?);
        }
        Ok(WhereClause { terms })
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Term::Compare { attr, op, rhs } => match rhs {
                Operand::Literal(l) => write!(f, "{attr} {} {l}", op.as_str()),
                Operand::Attr(a) => write!(f, "{attr} {} {a}", op.as_str()),
            },
            Term::In {
                attr,
                negated,
                values,
            } => {
                let vs: Vec<String> = values.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "{attr} {}IN ({})",
                    if *negated { "NOT " } else { "" },
                    vs.join(", ")
                )
            }
            Term::IsNull { attr, negated } => {
                write!(f, "{attr} IS {}NULL", if *negated { "NOT " } else { "" })
            }
            Term::IsBool { attr, negated, value } => write!(
                f,
                "{attr} IS {}{}",
                if *negated { "NOT " } else { "" },
                if *value { "TRUE" } else { "FALSE" }
            ),
            Term::Tested { term, negated, value } => write!(
                f,
                "{term} IS {}{}",
                if *negated { "NOT " } else { "" },
                if *value { "TRUE" } else { "FALSE" }
            ),
            Term::Contains { attr, value } => write!(f, "{attr} ? {value}"),
            Term::Len { attr, op, value } => write!(f, "LEN({attr}) {} {value}", op.as_str()),
        }
    }
}

impl fmt::Display for WhereClause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.terms.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(" AND "))
    }
}

/// Quotes a value as a where-clause string literal.
pub fn quote(s: &str) -> String {
    Literal::Str(s.to_string()).to_string()
}

/// Joins clauses with `AND`, skipping empty ones.
pub fn and<I: IntoIterator<Item = S>, S: AsRef<str>>(clauses: I) -> String {
    clauses
        .into_iter()
        .filter(|c| !c.as_ref().trim().is_empty())
        .map(|c| c.as_ref().trim().to_string())
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// What an attribute holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Str,
    Int,
    Bool,
    Uuid,
    Time,
    Map,
    Array,
}

/// The attributes an entity type can be filtered on.
pub(crate) type Schema = &'static [(&'static str, Ty)];

/// The entity a clause selects; each accepts its own attributes (`confighub-api.md` §2.2, v0.8.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Entity {
    /// Units (lists, `/unit_data`, bulk patch, function invocation).
    Unit,
    /// Spaces.
    Space,
    /// Releases.
    Release,
    /// Targets.
    Target,
    /// Filters.
    Filter,
    /// Revisions.
    Revision,
}

impl Entity {
    pub(crate) fn schema(self) -> Schema {
        match self {
            Entity::Unit => UNIT,
            Entity::Space => SPACE,
            Entity::Release => RELEASE,
            Entity::Target => TARGET,
            Entity::Filter => FILTER,
            Entity::Revision => REVISION,
        }
    }
}

/// Unit attributes accepted by `where` today (SPEC ListUnits).
pub(crate) static UNIT: Schema = &[
    ("Annotations", Ty::Map),
    ("ApplyGates", Ty::Map),
    ("ApplyWarnings", Ty::Map),
    ("ChangeSetID", Ty::Uuid),
    ("Conflicts", Ty::Map),
    ("CreatedAt", Ty::Time),
    ("DataHash", Ty::Str),
    ("DeleteGates", Ty::Map),
    ("DestroyGates", Ty::Map),
    ("DisplayName", Ty::Str),
    ("FromLinkID", Ty::Array),
    ("HeadRevisionID", Ty::Uuid),
    ("HeadRevisionNum", Ty::Int),
    ("HeadUnitActionNum", Ty::Int),
    ("HeadUnitEventNum", Ty::Int),
    ("HiddenReason", Ty::Str),
    ("Labels", Ty::Map),
    ("LastChangeDescription", Ty::Str),
    ("LastReleasedRevisionNum", Ty::Int),
    ("NeededPaths", Ty::Map),
    ("OrganizationID", Ty::Uuid),
    ("Permissions", Ty::Map),
    ("ProvidedPaths", Ty::Map),
    ("ProviderType", Ty::Str),
    ("Slug", Ty::Str),
    ("SpaceID", Ty::Uuid),
    ("TargetID", Ty::Uuid),
    ("ToolchainType", Ty::Str),
    ("UnitID", Ty::Uuid),
    ("UpdatedAt", Ty::Time),
    ("UpstreamRevisionNum", Ty::Int),
    ("UpstreamSpaceID", Ty::Uuid),
    ("UpstreamUnitID", Ty::Uuid),
    ("ValidationErrors", Ty::Map),
    ("ValidationTriggerIDs", Ty::Map),
    ("ValidationWarnings", Ty::Map),
    ("ValueTriggerIDs", Ty::Map),
    ("Values", Ty::Map),
];

/// Space attributes (SPEC-0.4 plus `UpstreamSpaceID`).
pub(crate) static SPACE: Schema = &[
    ("Annotations", Ty::Map),
    ("AttributeFilterID", Ty::Uuid),
    ("AttributeHash", Ty::Str),
    ("AttributeIDs", Ty::Array),
    ("CreatedAt", Ty::Time),
    ("DeleteGates", Ty::Map),
    ("DisplayName", Ty::Str),
    ("Labels", Ty::Map),
    ("OrganizationID", Ty::Uuid),
    ("Permissions", Ty::Map),
    ("ReleaseTargetID", Ty::Uuid),
    ("Slug", Ty::Str),
    ("SpaceID", Ty::Uuid),
    ("TriggerFilterID", Ty::Uuid),
    ("TriggerHash", Ty::Str),
    ("TriggerIDs", Ty::Array),
    ("UpdatedAt", Ty::Time),
    ("UpstreamSpaceID", Ty::Uuid),
];

/// Release attributes.
pub(crate) static RELEASE: Schema = &[
    ("Annotations", Ty::Map),
    ("ChangeOrderID", Ty::Uuid),
    ("CreatedAt", Ty::Time),
    ("DeleteGates", Ty::Map),
    ("Digest", Ty::Str),
    ("HiddenReason", Ty::Str),
    ("Labels", Ty::Map),
    ("LiveStatus", Ty::Map),
    ("ManifestDigest", Ty::Str),
    ("OrganizationID", Ty::Uuid),
    ("Permissions", Ty::Map),
    ("Published", Ty::Bool),
    ("ReleaseID", Ty::Uuid),
    ("ReleaseNum", Ty::Int),
    ("SpaceID", Ty::Uuid),
    ("TagID", Ty::Uuid),
    ("TargetID", Ty::Uuid),
    ("UnitCount", Ty::Int),
    ("UpdatedAt", Ty::Time),
    ("UserID", Ty::Uuid),
];

/// Target attributes.
pub(crate) static TARGET: Schema = &[
    ("Annotations", Ty::Map),
    ("BackingUnitID", Ty::Uuid),
    ("CreatedAt", Ty::Time),
    ("DeleteGates", Ty::Map),
    ("DisplayName", Ty::Str),
    ("Facts", Ty::Map),
    ("HiddenReason", Ty::Str),
    ("Labels", Ty::Map),
    ("OrganizationID", Ty::Uuid),
    ("Permissions", Ty::Map),
    ("Slug", Ty::Str),
    ("SpaceID", Ty::Uuid),
    ("TargetID", Ty::Uuid),
    ("TriggerFilterID", Ty::Uuid),
    ("TriggerHash", Ty::Str),
    ("TriggerIDs", Ty::Array),
    ("UpdatedAt", Ty::Time),
    ("UpstreamTargetID", Ty::Uuid),
];

/// Filter attributes. \[I\] Not listed in the reference; the fields of `Filter` that a `where` could name.
pub(crate) static FILTER: Schema = &[
    ("DisplayName", Ty::Str),
    ("FilterID", Ty::Uuid),
    ("From", Ty::Str),
    ("Labels", Ty::Map),
    ("Slug", Ty::Str),
    ("SpaceID", Ty::Uuid),
];

/// Revision attributes. \[I\] The fields of `Revision` a `where` could name.
pub(crate) static REVISION: Schema = &[
    ("CreatedAt", Ty::Time),
    ("DataHash", Ty::Str),
    ("Description", Ty::Str),
    ("RevisionID", Ty::Uuid),
    ("RevisionNum", Ty::Int),
    ("Source", Ty::Str),
    ("SpaceID", Ty::Uuid),
    ("UnitID", Ty::Uuid),
    ("UserID", Ty::Uuid),
];

/// Attributes that existed once and are refused now, with what to use instead.
const REMOVED: &[(&str, &str)] = &[
    ("SetID", "Sets no longer exist; use labels and filters"),
    (
        "LiveRevisionNum",
        "removed: use LastReleasedRevisionNum (what was released)",
    ),
    (
        "PreviousLiveRevisionNum",
        "removed: use the selector Before:LastReleasedRevisionNum",
    ),
    ("LastAppliedRevisionNum", "renamed LastReleasedRevisionNum"),
    ("LastActionAt", "removed"),
    ("BridgeWorkerID", "removed from units and targets in v0.7.0"),
    ("DriftReconciliationMode", "removed"),
    ("ApprovedBy", "removed: approvals are Attestations"),
    ("ContentHash", "renamed DataHash"),
    ("Data", "configuration data is not an attribute: use where_data"),
    ("CursorID", "removed: use limit and continue"),
    ("QueuedOperationID", "not a unit attribute"),
    ("UpstreamOrganizationID", "removed"),
];

/// Related entities a clause may reach, and the `include` the server needs for the join, if any.
fn schema_of(root: Schema, prefix: &str) -> Option<Schema> {
    match (std::ptr::eq(root.as_ptr(), UNIT.as_ptr()), prefix) {
        (true, "Unit" | "UpstreamUnit") => Some(UNIT),
        (true, "Space" | "UpstreamSpace") => Some(SPACE),
        (true, "Target") => Some(TARGET),
        (false, "Space") if std::ptr::eq(root.as_ptr(), RELEASE.as_ptr()) => Some(SPACE),
        _ => None,
    }
}

/// The `include` value a unit clause needs for its joins (`UpstreamUnit.HeadRevisionNum` needs
/// `UpstreamUnitID`, as `cub unit push-upgrade` sends). \[I\] reference §2.2 / §5 item 7: the server may
/// join some without it; the client always sends it and the simulator insists on it.
pub fn needed_includes(clause: &WhereClause) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut see = |a: &Attr| {
        let need = match a.path.first().map(String::as_str) {
            Some("UpstreamUnit") if a.path.len() > 1 => Some("UpstreamUnitID"),
            Some("UpstreamSpace") if a.path.len() > 1 => Some("UpstreamSpaceID"),
            Some("Target") if a.path.len() > 1 => Some("TargetID"),
            _ => None,
        };
        if let Some(n) = need
            && !out.contains(&n)
        {
            out.push(n);
        }
    };
    fn attrs<'a>(t: &'a Term, f: &mut dyn FnMut(&'a Attr)) {
        match t {
            Term::Compare { attr, rhs, .. } => {
                f(attr);
                if let Operand::Attr(a) = rhs {
                    f(a);
                }
            }
            Term::In { attr, .. }
            | Term::IsNull { attr, .. }
            | Term::IsBool { attr, .. }
            | Term::Contains { attr, .. }
            | Term::Len { attr, .. } => f(attr),
            Term::Tested { term, .. } => attrs(term, f),
        }
    }
    for t in &clause.terms {
        attrs(t, &mut see);
    }
    out
}

fn type_of(root: Schema, attr: &Attr) -> Result<Ty, String> {
    let mut schema = root;
    let (field, prefixes) = attr.path.split_last().ok_or("empty attribute")?;
    let mut after_star = false;
    for p in prefixes {
        if p == "*" {
            after_star = true;
            continue;
        }
        schema = schema_of(root, p).ok_or_else(|| format!("{p} is not an entity this clause can reach"))?;
    }
    if let Some((_, why)) = REMOVED.iter().find(|(n, _)| n == field) {
        return Err(format!("{attr}: {why}"));
    }
    let ty = schema
        .iter()
        .find(|(n, _)| n == field)
        .map(|(_, t)| *t)
        .ok_or_else(|| format!("unknown attribute {attr}"))?;
    let _ = after_star;
    Ok(match (ty, &attr.key) {
        (Ty::Map, Some(_)) => Ty::Str,
        (t, _) => t,
    })
}

/// Checks a clause against what an entity accepts: unknown and removed attributes, and operators that
/// do not fit the attribute's type, are refused as the API refuses them (400).
///
/// # Errors
/// Why, naming the attribute.
pub fn check(clause: &WhereClause, entity: Entity) -> Result<(), String> {
    check_terms(&clause.terms, entity.schema())
}

pub(crate) fn check_terms(terms: &[Term], root: Schema) -> Result<(), String> {
    for t in terms {
        match t {
            Term::Compare { attr, op, rhs } => {
                let ty = type_of(root, attr)?;
                let ok = match ty {
                    Ty::Str | Ty::Time => true,
                    Ty::Int => !op.is_text_only(),
                    Ty::Uuid | Ty::Bool => matches!(op, Op::Eq | Op::Ne),
                    Ty::Map | Ty::Array => false,
                };
                if !ok {
                    return Err(format!("operator {} does not apply to {attr}", op.as_str()));
                }
                if let Operand::Attr(other) = rhs {
                    type_of(root, other)?;
                }
                if let (Ty::Int, Operand::Literal(Literal::Str(_))) = (ty, rhs) {
                    return Err(format!("{attr} is an integer"));
                }
            }
            Term::In { attr, .. } => {
                if matches!(type_of(root, attr)?, Ty::Map | Ty::Array) {
                    return Err(format!("IN does not apply to {attr}"));
                }
            }
            Term::IsNull { attr, .. } | Term::IsBool { attr, .. } => {
                type_of(root, attr)?;
            }
            Term::Tested { term, .. } => check_terms(std::slice::from_ref(term), root)?,
            Term::Contains { attr, .. } | Term::Len { attr, .. } => {
                if type_of(root, attr)? != Ty::Array {
                    return Err(format!("{attr} is not an array"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(feature = "fake")]
pub(crate) mod eval {
    //! Evaluation against a JSON row (the fake hub's units, spaces and filters).

    use super::{Attr, Literal, Op, Operand, Term, WhereClause};
    use serde_json::Value;

    fn lookup<'a>(row: &'a Value, attr: &Attr) -> Option<&'a Value> {
        let mut v = row;
        let skip = usize::from(attr.path.len() > 1 && attr.path[0] == "Unit");
        for p in &attr.path[skip..] {
            v = v.get(p)?;
        }
        match &attr.key {
            Some(k) => v.get(k),
            None => Some(v),
        }
    }

    /// Every value an attribute reaches: one, or one per element for `List.*.Field`.
    fn lookup_all<'a>(row: &'a Value, attr: &Attr) -> Vec<&'a Value> {
        match attr.path.iter().position(|p| p == "*") {
            None => lookup(row, attr).into_iter().collect(),
            Some(i) => {
                let head = Attr {
                    path: attr.path[..i].to_vec(),
                    key: None,
                };
                let tail = Attr {
                    path: attr.path[i + 1..].to_vec(),
                    key: attr.key.clone(),
                };
                lookup(row, &head)
                    .and_then(Value::as_array)
                    .map(|items| items.iter().flat_map(|e| lookup_all(e, &tail)).collect())
                    .unwrap_or_default()
            }
        }
    }

    fn as_literal(v: &Value) -> Option<Literal> {
        match v {
            Value::String(s) => Some(Literal::Str(s.clone())),
            Value::Number(n) => n.as_i64().map(Literal::Int),
            Value::Bool(b) => Some(Literal::Bool(*b)),
            _ => None,
        }
    }

    fn like(pattern: &str, text: &str, ci: bool) -> bool {
        let mut re = String::from("(?s)^");
        if ci {
            re.insert_str(0, "(?i)");
        }
        for c in pattern.chars() {
            match c {
                '%' => re.push_str(".*"),
                '_' => re.push('.'),
                c => re.push_str(&regex::escape(&c.to_string())),
            }
        }
        re.push('$');
        regex::Regex::new(&re).is_ok_and(|r| r.is_match(text))
    }

    fn regex_match(pattern: &str, text: &str, ci: bool) -> bool {
        let p = if ci {
            format!("(?i){pattern}")
        } else {
            pattern.to_string()
        };
        regex::Regex::new(&p).is_ok_and(|r| r.is_match(text))
    }

    fn compare(l: &Literal, op: Op, r: &Literal) -> bool {
        use std::cmp::Ordering;
        let ord: Option<Ordering> = match (l, r) {
            (Literal::Str(a), Literal::Str(b)) => Some(a.cmp(b)),
            (Literal::Int(a), Literal::Int(b)) => Some(a.cmp(b)),
            (Literal::Bool(a), Literal::Bool(b)) => Some(a.cmp(b)),
            _ => None,
        };
        match (op, l, r) {
            (Op::Like | Op::NotLike | Op::ILike, Literal::Str(t), Literal::Str(p)) => {
                let m = like(p, t, op == Op::ILike);
                if op == Op::NotLike { !m } else { m }
            }
            (Op::Regex | Op::IRegex | Op::NotRegex | Op::NotIRegex, Literal::Str(t), Literal::Str(p)) => {
                let m = regex_match(p, t, matches!(op, Op::IRegex | Op::NotIRegex));
                if matches!(op, Op::NotRegex | Op::NotIRegex) {
                    !m
                } else {
                    m
                }
            }
            (Op::Eq, ..) => ord == Some(Ordering::Equal),
            (Op::Ne, ..) => ord != Some(Ordering::Equal),
            (Op::Lt, ..) => ord == Some(Ordering::Less),
            (Op::Gt, ..) => ord == Some(Ordering::Greater),
            (Op::Le, ..) => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
            (Op::Ge, ..) => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
            _ => false,
        }
    }

    /// Whether a row (an entity as JSON, with related entities under their names) satisfies the clause.
    pub(crate) fn matches(clause: &WhereClause, row: &Value) -> bool {
        clause.terms.iter().all(|t| term_matches(t, row) == Some(true))
    }

    /// A term's truth: `None` is SQL's NULL (a comparison with a missing value).
    fn term_matches(t: &Term, row: &Value) -> Option<bool> {
        Some(match t {
            Term::Compare { attr, op, rhs } if attr.path.iter().any(|p| p == "*") => {
                let r = match rhs {
                    Operand::Literal(r) => r.clone(),
                    Operand::Attr(a) => lookup(row, a).and_then(as_literal)?,
                };
                lookup_all(row, attr)
                    .into_iter()
                    .filter_map(as_literal)
                    .any(|l| compare(&l, *op, &r))
            }
            Term::Compare { attr, op, rhs } => {
                let l = lookup(row, attr).filter(|v| !v.is_null()).and_then(as_literal)?;
                let r = match rhs {
                    Operand::Literal(r) => r.clone(),
                    Operand::Attr(a) => lookup(row, a).and_then(as_literal)?,
                };
                compare(&l, *op, &r)
            }
            Term::Tested { term, negated, value } => {
                let r = term_matches(term, row);
                (r == Some(*value)) != *negated
            }
            Term::In {
                attr,
                negated,
                values,
            } => {
                let hit = lookup(row, attr)
                    .and_then(as_literal)
                    .is_some_and(|l| values.iter().any(|v| compare(&l, Op::Eq, v)));
                hit != *negated
            }
            Term::IsNull { attr, negated } => {
                let null = lookup(row, attr).is_none_or(|v| v.is_null() || v.as_str() == Some(""));
                null != *negated
            }
            Term::IsBool { attr, negated, value } => {
                (lookup(row, attr).and_then(Value::as_bool) == Some(*value)) != *negated
            }
            Term::Contains { attr, value } => lookup(row, attr).and_then(Value::as_array).is_some_and(|a| {
                a.iter()
                    .filter_map(as_literal)
                    .any(|l| compare(&l, Op::Eq, value))
            }),
            Term::Len { attr, op, value } => {
                let n = lookup(row, attr).and_then(Value::as_array).map_or(0, Vec::len) as i64;
                compare(&Literal::Int(n), *op, &Literal::Int(*value))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let c = WhereClause::parse(
            "Labels.tier = 'critical' AND HeadRevisionNum > LastReleasedRevisionNum AND Slug IN ('a','b') AND LEN(FromLinkID) > 0 \
             AND FromLinkID ? 'u-1' AND Labels.x IS NOT NULL AND Slug NOT LIKE 'tmp-%' AND Space.Labels.environment != 'prod' \
             AND Unit.UpstreamRevisionNum < UpstreamUnit.HeadRevisionNum AND DisplayName ~* '^web' AND Slug !~~ 'x%'",
        )
        .expect("parses");
        assert_eq!(c.terms.len(), 11);
        assert_eq!(
            c.terms[0],
            Term::Compare {
                attr: Attr {
                    path: vec!["Labels".into()],
                    key: Some("tier".into())
                },
                op: Op::Eq,
                rhs: Operand::Literal(Literal::Str("critical".into()))
            }
        );
        // Printing gives a clause that parses to the same tree.
        assert_eq!(WhereClause::parse(&c.to_string()).expect("round trip"), c);
    }

    #[test]
    fn label_keys_may_hold_dots_dashes_and_slashes() {
        let c = WhereClause::parse("Labels.app.kubernetes.io/name = 'web' AND Labels.drift-set = 'x'")
            .expect("parses");
        let Term::Compare { attr, .. } = &c.terms[0] else {
            panic!("compare")
        };
        assert_eq!(attr.key.as_deref(), Some("app.kubernetes.io/name"));
    }

    #[test]
    fn rejects_what_the_api_rejects_with_a_position() {
        for (clause, what) in [
            ("Labels.a = 'x' OR Slug = 'y'", "OR is not supported"),
            ("SetIDs contains 'abc'", "no `contains` operator"),
            ("Labels['monitor'] = 'true'", "unexpected character"),
            ("Slug = \"x\"", "single quotes"),
            ("Slug = 'x", "unterminated"),
            ("Slug LIKE 3", "LIKE takes a string literal"),
            ("Slug = ", "expected a literal"),
            ("HeadRevisionNum ~ 3", "takes a string literal"),
            ("", "empty"),
            ("Slug = 'a' AND", "expected an attribute"),
            ("slug = 'a'", "not an attribute"),
        ] {
            let e = WhereClause::parse(clause).expect_err(clause);
            assert!(e.to_string().contains(what), "{clause}: {e}");
        }
        assert_eq!(
            WhereClause::parse("Slug = 'a' OR x").expect_err("or").position,
            11
        );
    }

    #[test]
    fn a_quote_inside_a_literal_is_refused() {
        // The grammar has no escape for a single quote: `''` inside a literal is not ConfigHub's.
        let e = WhereClause::parse("Slug = 'it''s'").expect_err("no escape");
        assert!(e.to_string().contains("cannot hold a single quote"), "{e}");
        assert_eq!(e.position, 10);
        assert!(WhereClause::parse(&format!("Slug = {}", quote("it's"))).is_err());
        assert_eq!(and(["A = 1", "", " B = 2 "]), "A = 1 AND B = 2");
    }

    #[test]
    fn accepts_what_the_api_accepts_today() {
        for clause in [
            "Slug = 'a' IS NOT TRUE",
            "TargetID = '00000000-0000-0000-0000-000000000001' IS NOT FALSE",
            "Labels.x IS NOT TRUE",
            "FromLink.*.Slug = 'upgrade-app'",
            "ValidationErrors.space/trigger/vet-images IS NOT NULL",
            "HeadRevisionNum > LastReleasedRevisionNum",
            "LEN(FromLinkID) > 0",
        ] {
            WhereClause::parse(clause).unwrap_or_else(|e| panic!("{clause}: {e}"));
        }
        let c = WhereClause::parse("ValidationErrors.a/b/c IS NOT NULL").expect("map");
        let Term::IsNull { attr, .. } = &c.terms[0] else {
            panic!("is null")
        };
        assert_eq!(attr.key.as_deref(), Some("a/b/c"));
        for clause in [
            "HeadRevisionNum > LastReleasedRevisionNum",
            "ValidationErrors.x IS NOT NULL",
        ] {
            check(&WhereClause::parse(clause).expect(clause), Entity::Unit)
                .unwrap_or_else(|e| panic!("{clause}: {e}"));
        }
    }

    #[test]
    fn removed_attributes_are_refused() {
        for (clause, why) in [
            ("HeadRevisionNum > LiveRevisionNum", "LastReleasedRevisionNum"),
            ("LastAppliedRevisionNum > 0", "renamed LastReleasedRevisionNum"),
            ("SetID = 'x'", "Sets no longer exist"),
            ("BridgeWorkerID = 'x'", "v0.7.0"),
            ("Colour = 'red'", "unknown attribute"),
            ("HeadRevisionNum LIKE 'x'", "does not apply"),
        ] {
            let c = WhereClause::parse(clause).expect(clause);
            let e = check(&c, Entity::Unit).expect_err(clause);
            assert!(e.contains(why), "{clause}: {e}");
        }
        let c = WhereClause::parse("UpstreamRevisionNum < UpstreamUnit.HeadRevisionNum").expect("join");
        assert_eq!(needed_includes(&c), ["UpstreamUnitID"]);
    }

    #[cfg(feature = "fake")]
    #[test]
    fn evaluates_against_rows() {
        use serde_json::json;
        let row = json!({"Slug": "web", "HeadRevisionNum": 3, "LastReleasedRevisionNum": 2, "Labels": {"tier": "critical"},
            "FromLinkID": ["u1"], "UpstreamRevisionNum": 1, "UpstreamUnit": {"HeadRevisionNum": 2},
            "FromLink": [{"Slug": "a"}, {"Slug": "upgrade-app"}], "TargetID": null});
        let yes = |c: &str| eval::matches(&WhereClause::parse(c).expect(c), &row);
        assert!(yes(
            "Labels.tier = 'critical' AND HeadRevisionNum > LastReleasedRevisionNum"
        ));
        assert!(yes("Unit.UpstreamRevisionNum < UpstreamUnit.HeadRevisionNum"));
        assert!(yes(
            "Slug IN ('a', 'web') AND Slug LIKE 'w%' AND Slug ILIKE 'WE_' AND FromLinkID ? 'u1' AND LEN(FromLinkID) = 1"
        ));
        assert!(yes(
            "Labels.missing IS NULL AND Labels.tier IS NOT NULL AND Slug ~ '^w'"
        ));
        assert!(yes("FromLink.*.Slug = 'upgrade-app'"));
        assert!(!yes("FromLink.*.Slug = 'nope'"));
        // NULL is neither true nor false: `= x IS NOT FALSE` matches equal or NULL.
        assert!(yes("TargetID = 'x' IS NOT FALSE"));
        assert!(!yes("TargetID = 'x'"));
        assert!(!yes("TargetID != 'x'"));
        assert!(yes("Slug = 'web' IS TRUE AND Slug = 'db' IS NOT TRUE"));
        assert!(!yes("Labels.tier != 'critical'"));
        assert!(!yes("Slug NOT IN ('web')"));
    }
}
