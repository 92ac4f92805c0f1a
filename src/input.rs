//! Checks on the arguments of the SQL functions, before anything is read or written.
//!
//! Every SQL function is declared non-STRICT so that a NULL reaches these checks and
//! gets a specific error instead of silently returning NULL.

use std::time::Duration;

use pglock_protocol::limits::{MAX_DATA_BYTES, MAX_LABEL_CHARS, MAX_LEASE};
use pglock_protocol::Lease;
use pgrx::prelude::Interval;

use crate::error::PglockError;
use crate::interval::lease_of;

/// A lock name or owner label: 1 to [`MAX_LABEL_CHARS`] characters.
pub fn label<'a>(argument: &'static str, value: Option<&'a str>) -> Result<&'a str, PglockError> {
    let value = required(argument, value)?;
    if value.is_empty() {
        return Err(PglockError::EmptyLabel { argument });
    }
    let chars = value.chars().count();
    if chars > MAX_LABEL_CHARS {
        return Err(PglockError::LabelTooLong { argument, chars });
    }
    Ok(value)
}

/// A lease: more than zero and at most a day, months counted as 30 days.
pub fn lease(argument: &'static str, value: Option<Interval>) -> Result<Lease, PglockError> {
    let lease = lease_of(required(argument, value)?);
    let micros = lease.as_micros();
    if micros <= 0 || micros > MAX_LEASE.as_micros() as i128 {
        return Err(PglockError::LeaseOutOfRange { argument, micros });
    }
    Ok(lease)
}

/// An optional new lease (heartbeat): NULL keeps the current one.
pub fn optional_lease(
    argument: &'static str,
    value: Option<Interval>,
) -> Result<Option<Lease>, PglockError> {
    value
        .map(|lease_value| lease(argument, Some(lease_value)))
        .transpose()
}

/// How long a waiting acquire may wait: zero or more; NULL waits as long as it takes.
pub fn wait_timeout(
    argument: &'static str,
    value: Option<Interval>,
) -> Result<Option<Duration>, PglockError> {
    match value {
        None => Ok(None),
        Some(interval) if interval.as_micros() < 0 => Err(PglockError::NegativeWait {
            argument,
            micros: interval.as_micros(),
        }),
        Some(interval) => Ok(Some(lease_of(interval).as_duration())),
    }
}

/// A record version number: the sequence starts at 1, so anything else cannot match.
pub fn rvn(argument: &'static str, value: Option<i64>) -> Result<i64, PglockError> {
    let value = required(argument, value)?;
    if value <= 0 {
        return Err(PglockError::RvnNotPositive {
            argument,
            rvn: value,
        });
    }
    Ok(value)
}

/// An optional RVN (`observed_rvn`): NULL means "none seen yet".
pub fn optional_rvn(
    argument: &'static str,
    value: Option<i64>,
) -> Result<Option<i64>, PglockError> {
    value
        .map(|rvn_value| rvn(argument, Some(rvn_value)))
        .transpose()
}

/// Lock data: optional, at most [`MAX_DATA_BYTES`].
pub fn data(value: Option<&[u8]>) -> Result<Option<&[u8]>, PglockError> {
    match value {
        Some(bytes) if bytes.len() > MAX_DATA_BYTES => {
            Err(PglockError::DataTooLarge { bytes: bytes.len() })
        }
        _ => Ok(value),
    }
}

/// A boolean switch such as `replace_data` or `keep`; its default is given in SQL.
pub fn flag(argument: &'static str, value: Option<bool>) -> Result<bool, PglockError> {
    required(argument, value)
}

fn required<T>(argument: &'static str, value: Option<T>) -> Result<T, PglockError> {
    value.ok_or(PglockError::NullArgument { argument })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(days: i32, micros: i64) -> Interval {
        Interval::new(0, days, micros).expect("valid interval")
    }

    #[test]
    fn labels_must_be_present_non_empty_and_short() {
        assert_eq!(label("name", Some("jobs")), Ok("jobs"));
        assert_eq!(
            label("name", None),
            Err(PglockError::NullArgument { argument: "name" })
        );
        assert_eq!(
            label("owner", Some("")),
            Err(PglockError::EmptyLabel { argument: "owner" })
        );
        let longest = "é".repeat(MAX_LABEL_CHARS);
        assert_eq!(label("name", Some(&longest)), Ok(longest.as_str()));
        let too_long = "x".repeat(MAX_LABEL_CHARS + 1);
        assert_eq!(
            label("name", Some(&too_long)),
            Err(PglockError::LabelTooLong {
                argument: "name",
                chars: MAX_LABEL_CHARS + 1
            })
        );
    }

    #[test]
    fn leases_must_be_positive_and_at_most_a_day() {
        assert!(lease("lease", Some(interval(0, 1))).is_ok());
        assert!(lease("lease", Some(interval(1, 0))).is_ok());
        assert!(lease("lease", Some(interval(1, 1))).is_err());
        assert!(lease("lease", Some(interval(0, 0))).is_err());
        assert!(lease("lease", Some(interval(0, -5_000_000))).is_err());
        let one_month = Interval::new(1, 0, 0).expect("valid interval");
        assert_eq!(
            lease("lease", Some(one_month)).err(),
            Some(PglockError::LeaseOutOfRange {
                argument: "lease",
                micros: 30 * 86_400_000_000
            })
        );
        assert_eq!(
            lease("lease", None).err(),
            Some(PglockError::NullArgument { argument: "lease" })
        );
        assert!(matches!(optional_lease("lease", None), Ok(None)));
        assert!(optional_lease("lease", Some(interval(0, 0))).is_err());
    }

    #[test]
    fn rvns_must_be_positive() {
        assert_eq!(rvn("rvn", Some(1)), Ok(1));
        assert_eq!(
            rvn("rvn", Some(0)),
            Err(PglockError::RvnNotPositive {
                argument: "rvn",
                rvn: 0
            })
        );
        assert!(rvn("rvn", Some(i64::MIN)).is_err());
        assert_eq!(
            rvn("rvn", None),
            Err(PglockError::NullArgument { argument: "rvn" })
        );
        assert_eq!(optional_rvn("observed_rvn", None), Ok(None));
        assert!(optional_rvn("observed_rvn", Some(-1)).is_err());
    }

    #[test]
    fn data_is_limited_in_size() {
        assert_eq!(data(None), Ok(None));
        let largest = vec![0u8; MAX_DATA_BYTES];
        assert!(data(Some(&largest)).is_ok());
        let too_large = vec![0u8; MAX_DATA_BYTES + 1];
        assert_eq!(
            data(Some(&too_large)),
            Err(PglockError::DataTooLarge {
                bytes: MAX_DATA_BYTES + 1
            })
        );
    }
}
