//! How what happened becomes a recipient's [`Outcome`]: remote replies to statuses and
//! `smtp;` diagnostics, 4xx to temporary and 5xx to permanent, and the rule that a temporary
//! outcome always carries a `4.x.x` status. Pure code.

use tern_queue::transport::{Failure, Outcome};

use tern_protocol::client_reply::ClientReply;

/// Status for a reply that breaks the protocol (malformed, or a code that makes no sense).
pub const STATUS_PROTOCOL_ERROR: &str = "4.5.0";

/// The enhanced status a reply stands for: its own when it has one, else one derived from its
/// class (`4.0.0`, `5.0.0`; anything else is a protocol error).
pub fn reply_status(reply: &ClientReply) -> String {
    if let Some(status) = &reply.status {
        return status.clone();
    }
    match reply.class() {
        2 => "2.0.0".into(),
        4 => "4.0.0".into(),
        5 => "5.0.0".into(),
        _ => STATUS_PROTOCOL_ERROR.into(),
    }
}

/// The failure a reply from `host` reports: its status, `smtp; <reply>` as diagnostic.
pub fn reply_failure(reply: &ClientReply, host: &str) -> Failure {
    Failure {
        status: reply_status(reply),
        remote_mta: Some(host.to_owned()),
        diagnostic: format!("smtp; {reply}"),
    }
}

/// The outcome of a negative reply: 5xx permanent, 4xx temporary; any other code where a
/// negative one was expected is a protocol error, so temporary with `4.5.0`.
pub fn reply_outcome(reply: &ClientReply, host: &str) -> Outcome {
    let failure = reply_failure(reply, host);
    match reply.class() {
        5 => Outcome::Permanent(failure),
        4 => Outcome::Temporary(failure),
        _ => Outcome::Temporary(Failure { status: STATUS_PROTOCOL_ERROR.into(), ..failure }),
    }
}

/// `failure` as a temporary outcome; a `5.x.y` status becomes `4.x.y` so a delay report
/// never shows a permanent status for mail that will be retried.
pub fn temporary(failure: Failure) -> Outcome {
    Outcome::Temporary(Failure { status: as_transient(&failure.status), ..failure })
}

fn as_transient(status: &str) -> String {
    match status.strip_prefix("5.") {
        Some(rest) => format!("4.{rest}"),
        None => status.to_owned(),
    }
}

/// A failure no server answered for (connection refused, timeout, DNS): no `Remote-MTA`.
pub fn local_failure(status: &str, diagnostic: impl Into<String>) -> Failure {
    Failure { status: status.to_owned(), remote_mta: None, diagnostic: diagnostic.into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_protocol::client_reply::parse_reply;

    fn reply(text: &str) -> ClientReply {
        parse_reply(text.as_bytes()).expect("reply")
    }

    #[test]
    fn reply_outcomes() {
        let cases: &[(&str, &str, bool, &str)] = &[
            (
                "550 5.1.1 <x@y>: Recipient address rejected\r\n",
                "5.1.1",
                true,
                "smtp; 550 5.1.1 <x@y>: Recipient address rejected",
            ),
            ("450 4.2.0 Greylisted\r\n", "4.2.0", false, "smtp; 450 4.2.0 Greylisted"),
            ("554 no valid recipients\r\n", "5.0.0", true, "smtp; 554 no valid recipients"),
            ("421 shutting down\r\n", "4.0.0", false, "smtp; 421 shutting down"),
            ("552-5.3.4 too\r\n552 5.3.4 big\r\n", "5.3.4", true, "smtp; 552 5.3.4 too big"),
            // A positive or intermediate code where a negative one was expected.
            ("354 go ahead\r\n", "4.5.0", false, "smtp; 354 go ahead"),
            ("250 2.1.5 Ok\r\n", "4.5.0", false, "smtp; 250 2.1.5 Ok"),
        ];
        for &(text, status, permanent, diagnostic) in cases {
            let expected = Failure {
                status: status.into(),
                remote_mta: Some("mx.dest.test".into()),
                diagnostic: diagnostic.into(),
            };
            let expected =
                if permanent { Outcome::Permanent(expected) } else { Outcome::Temporary(expected) };
            assert_eq!(reply_outcome(&reply(text), "mx.dest.test"), expected, "{text:?}");
        }
    }

    #[test]
    fn temporary_outcomes_never_carry_a_permanent_status() {
        let cases =
            [("5.7.8", "4.7.8"), ("4.4.1", "4.4.1"), ("5.0.0", "4.0.0"), ("4.7.5", "4.7.5")];
        for (status, expected) in cases {
            let outcome = temporary(local_failure(status, "x"));
            assert_eq!(outcome, Outcome::Temporary(local_failure(expected, "x")), "{status}");
        }
    }
}
