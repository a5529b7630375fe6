//! POP3 command lines (RFC 1939 section 3, RFC 2449, RFC 2595, RFC 5034) parsed into
//! [`Command`]s, with an error that says precisely what was wrong. Pure code over bytes.
//!
//! Keywords are case-insensitive; arguments are separated by single spaces. `PASS` takes the
//! rest of the line as the password, since passwords may contain spaces (RFC 1939 section 7).

/// A message number as the client gave it (1-based; checked against the maildrop later).
pub type MessageNumber = u64;

/// One parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `USER name`.
    User(String),
    /// `PASS password`.
    Pass(String),
    /// `AUTH [mechanism [initial-response]]`; without a mechanism, a request for the list.
    Auth {
        /// The SASL mechanism, uppercased.
        mechanism: Option<String>,
        /// The initial response, still base64 (`=` for an empty one).
        initial: Option<String>,
    },
    /// `APOP name digest`, which Tern does not offer (it needs the password in clear).
    Apop,
    /// `STLS`.
    Stls,
    /// `CAPA`.
    Capa,
    /// `STAT`.
    Stat,
    /// `LIST [msg]`.
    List(Option<MessageNumber>),
    /// `UIDL [msg]`.
    Uidl(Option<MessageNumber>),
    /// `RETR msg`.
    Retr(MessageNumber),
    /// `TOP msg n`.
    Top(MessageNumber, u64),
    /// `DELE msg`.
    Dele(MessageNumber),
    /// `NOOP`.
    Noop,
    /// `RSET`.
    Rset,
    /// `QUIT`.
    Quit,
}

impl Command {
    /// The keyword, for messages and logs.
    pub fn keyword(&self) -> &'static str {
        match self {
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Auth { .. } => "AUTH",
            Command::Apop => "APOP",
            Command::Stls => "STLS",
            Command::Capa => "CAPA",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Uidl(_) => "UIDL",
            Command::Retr(_) => "RETR",
            Command::Top(..) => "TOP",
            Command::Dele(_) => "DELE",
            Command::Noop => "NOOP",
            Command::Rset => "RSET",
            Command::Quit => "QUIT",
        }
    }
}

/// Why a line is not a command; `Display` is the text after `-ERR `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing but the line end.
    #[error("empty command")]
    Empty,
    /// Bytes that are not printable text (controls, invalid UTF-8).
    #[error("command contains control characters or invalid UTF-8")]
    NotText,
    /// A keyword Tern does not know.
    #[error("unknown command {0:?}")]
    Unknown(String),
    /// A required argument is missing.
    #[error("{keyword} needs {what}")]
    Missing {
        /// The command.
        keyword: &'static str,
        /// What is missing.
        what: &'static str,
    },
    /// More arguments than the command takes.
    #[error("too many arguments to {0}")]
    TooMany(&'static str),
    /// An argument that should be a number is not one.
    #[error("{keyword}: {text:?} is not a valid number")]
    BadNumber {
        /// The command.
        keyword: &'static str,
        /// The argument given.
        text: String,
    },
}

/// Longest unknown keyword quoted back to the client.
const MAX_ECHO: usize = 16;

/// Parses one line, with or without its CRLF.
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|_| ParseError::NotText)?;
    if text.chars().any(char::is_control) {
        return Err(ParseError::NotText);
    }
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let (keyword, rest) = match text.split_once(' ') {
        Some((keyword, rest)) => (keyword, Some(rest)),
        None => (text, None),
    };
    let keyword = keyword.to_ascii_uppercase();
    if keyword == "PASS" {
        return match rest {
            Some(password) if !password.is_empty() => Ok(Command::Pass(password.to_string())),
            _ => Err(ParseError::Missing { keyword: "PASS", what: "a password" }),
        };
    }
    let args: Vec<&str> = rest.map(|r| r.split(' ').collect()).unwrap_or_default();
    parse_keyword(&keyword, &args)
}

fn parse_keyword(keyword: &str, args: &[&str]) -> Result<Command, ParseError> {
    Ok(match keyword {
        "USER" => Command::User(one(args, "USER", "a name")?.to_string()),
        "AUTH" => parse_auth(args)?,
        "APOP" => Command::Apop,
        "STLS" => none(args, "STLS", Command::Stls)?,
        "CAPA" => none(args, "CAPA", Command::Capa)?,
        "STAT" => none(args, "STAT", Command::Stat)?,
        "NOOP" => none(args, "NOOP", Command::Noop)?,
        "RSET" => none(args, "RSET", Command::Rset)?,
        "QUIT" => none(args, "QUIT", Command::Quit)?,
        "LIST" => Command::List(optional_number(args, "LIST")?),
        "UIDL" => Command::Uidl(optional_number(args, "UIDL")?),
        "RETR" => Command::Retr(number(one(args, "RETR", "a message number")?, "RETR")?),
        "DELE" => Command::Dele(number(one(args, "DELE", "a message number")?, "DELE")?),
        "TOP" => match args {
            [msg, lines] => Command::Top(number(msg, "TOP")?, number(lines, "TOP")?),
            [] | [_] => {
                return Err(ParseError::Missing {
                    keyword: "TOP",
                    what: "a message number and a line count",
                });
            }
            _ => return Err(ParseError::TooMany("TOP")),
        },
        other => {
            let mut echo: String = other.chars().take(MAX_ECHO).collect();
            if other.chars().count() > MAX_ECHO {
                echo.push('…');
            }
            return Err(ParseError::Unknown(echo));
        }
    })
}

fn parse_auth(args: &[&str]) -> Result<Command, ParseError> {
    match args {
        [] => Ok(Command::Auth { mechanism: None, initial: None }),
        [mechanism] => {
            Ok(Command::Auth { mechanism: Some(mechanism.to_ascii_uppercase()), initial: None })
        }
        [mechanism, initial] => Ok(Command::Auth {
            mechanism: Some(mechanism.to_ascii_uppercase()),
            initial: Some((*initial).to_string()),
        }),
        _ => Err(ParseError::TooMany("AUTH")),
    }
}

fn none(args: &[&str], keyword: &'static str, command: Command) -> Result<Command, ParseError> {
    if args.is_empty() { Ok(command) } else { Err(ParseError::TooMany(keyword)) }
}

fn one<'a>(
    args: &[&'a str],
    keyword: &'static str,
    what: &'static str,
) -> Result<&'a str, ParseError> {
    match args {
        [arg] if !arg.is_empty() => Ok(arg),
        [] | [_] => Err(ParseError::Missing { keyword, what }),
        _ => Err(ParseError::TooMany(keyword)),
    }
}

fn optional_number(
    args: &[&str],
    keyword: &'static str,
) -> Result<Option<MessageNumber>, ParseError> {
    match args {
        [] => Ok(None),
        [arg] => number(arg, keyword).map(Some),
        _ => Err(ParseError::TooMany(keyword)),
    }
}

/// A decimal number: digits only (no sign, no spaces), within `u64`.
fn number(text: &str, keyword: &'static str) -> Result<u64, ParseError> {
    let bad = || ParseError::BadNumber { keyword, text: text.chars().take(MAX_ECHO).collect() };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    text.parse().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        let cases: &[(&[u8], Command)] = &[
            (b"USER alice\r\n", Command::User("alice".into())),
            (b"user alice", Command::User("alice".into())),
            (b"PASS correct horse \r\n", Command::Pass("correct horse ".into())),
            (b"STAT\r\n", Command::Stat),
            (b"list\r\n", Command::List(None)),
            (b"LIST 2\r\n", Command::List(Some(2))),
            (b"UIDL 7\n", Command::Uidl(Some(7))),
            (b"RETR 1\r\n", Command::Retr(1)),
            (b"TOP 1 0\r\n", Command::Top(1, 0)),
            (b"DELE 3\r\n", Command::Dele(3)),
            (b"AUTH\r\n", Command::Auth { mechanism: None, initial: None }),
            (b"AUTH plain\r\n", Command::Auth { mechanism: Some("PLAIN".into()), initial: None }),
            (
                b"AUTH PLAIN AGEAYg==\r\n",
                Command::Auth { mechanism: Some("PLAIN".into()), initial: Some("AGEAYg==".into()) },
            ),
            (b"STLS\r\n", Command::Stls),
            (b"CAPA\r\n", Command::Capa),
            (b"QUIT\r\n", Command::Quit),
            (b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n", Command::Apop),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line).as_ref(), Ok(want), "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn bad_lines_get_precise_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"\r\n", "empty command"),
            (b"   \r\n", "empty command"),
            (b"FROB\r\n", "unknown command \"FROB\""),
            (b"AAAAAAAAAAAAAAAAAAAAAAAAAA\r\n", "unknown command \"AAAAAAAAAAAAAAAA…\""),
            (b"RETR\r\n", "RETR needs a message number"),
            (b"RETR \r\n", "RETR needs a message number"),
            (b"RETR x\r\n", "RETR: \"x\" is not a valid number"),
            (b"RETR -1\r\n", "RETR: \"-1\" is not a valid number"),
            (
                b"RETR 99999999999999999999999\r\n",
                "RETR: \"9999999999999999\" is not a valid number",
            ),
            (b"RETR 1 2\r\n", "too many arguments to RETR"),
            (b"LIST  1\r\n", "too many arguments to LIST"),
            (b"TOP 1\r\n", "TOP needs a message number and a line count"),
            (b"TOP 1 x\r\n", "TOP: \"x\" is not a valid number"),
            (b"STAT 1\r\n", "too many arguments to STAT"),
            (b"PASS\r\n", "PASS needs a password"),
            (b"PASS \r\n", "PASS needs a password"),
            (b"USER\r\n", "USER needs a name"),
            (b"NOOP\0\r\n", "command contains control characters or invalid UTF-8"),
            (b"NOOP\rQUIT\r\n", "command contains control characters or invalid UTF-8"),
            (b"\xff\xfe\r\n", "command contains control characters or invalid UTF-8"),
            (b"AUTH PLAIN a b\r\n", "too many arguments to AUTH"),
        ];
        for (line, want) in cases {
            let got = parse(line).map_err(|e| e.to_string());
            assert_eq!(got, Err(want.to_string()), "{:?}", String::from_utf8_lossy(line));
        }
    }
}
