//! The rules every argument of pglock meets, written once: the extension
//! enforces them (each error with its SQLSTATE, at its SQL boundary), the Rust
//! client checks its configuration with them before it sends anything.  A
//! missing (NULL) argument is the caller's own matter: SQL has NULLs, Rust not.

use std::time::Duration;

use crate::limits::{
    MAX_DATA_BYTES, MAX_LABEL_CHARS, MAX_LEASE, MAX_SEMAPHORE_NAME_CHARS, MAX_SLOTS,
};
use crate::lock::Lease;

/// An argument that breaks its rule.  The messages are the ones users see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgumentError {
    /// A lock name or owner label that is the empty string.
    #[error("pglock: {argument} must not be empty")]
    EmptyLabel { argument: &'static str },
    /// A name or owner label over [`MAX_LABEL_CHARS`].
    #[error("pglock: {argument} is {chars} characters long; the limit is {MAX_LABEL_CHARS}")]
    LabelTooLong {
        argument: &'static str,
        chars: usize,
    },
    /// A label with a NUL, which PostgreSQL's text cannot hold.
    #[error("pglock: {argument} must not contain a NUL character")]
    LabelContainsNul { argument: &'static str },
    /// A lease that is zero, negative or over a day.
    #[error(
        "pglock: {argument} must be greater than 0 and at most 1 day, got {} seconds",
        seconds(*micros)
    )]
    LeaseOutOfRange {
        argument: &'static str,
        micros: i128,
    },
    /// A negative wait.
    #[error("pglock: {argument} must not be negative, got {} seconds", seconds(*micros))]
    NegativeWait {
        argument: &'static str,
        micros: i128,
    },
    /// An RVN that is zero or negative (the sequence starts at 1).
    #[error("pglock: {argument} must be a positive RVN, got {rvn}")]
    RvnNotPositive { argument: &'static str, rvn: i64 },
    /// Data larger than [`MAX_DATA_BYTES`].
    #[error("pglock: data is {bytes} bytes; the limit is {MAX_DATA_BYTES} bytes")]
    DataTooLarge { bytes: usize },
    /// A semaphore name too long for its slots' names to be lock names.
    #[error(
        "pglock: {argument} is {chars} characters long; the limit for a semaphore is \
         {MAX_SEMAPHORE_NAME_CHARS}"
    )]
    SemaphoreNameTooLong {
        argument: &'static str,
        chars: usize,
    },
    /// A slot count outside 1 to [`MAX_SLOTS`].
    #[error("pglock: {argument} must be between 1 and {MAX_SLOTS}, got {slots}")]
    SlotsOutOfRange { argument: &'static str, slots: i64 },
}

fn seconds(micros: i128) -> f64 {
    micros as f64 / 1e6
}

/// A lock name or owner label: 1 to [`MAX_LABEL_CHARS`] characters, no NUL.
pub fn label<'a>(argument: &'static str, value: &'a str) -> Result<&'a str, ArgumentError> {
    if value.is_empty() {
        return Err(ArgumentError::EmptyLabel { argument });
    }
    let chars = value.chars().count();
    if chars > MAX_LABEL_CHARS {
        return Err(ArgumentError::LabelTooLong { argument, chars });
    }
    if value.contains('\0') {
        return Err(ArgumentError::LabelContainsNul { argument });
    }
    Ok(value)
}

/// A semaphore's name: a label short enough that its slots' names
/// (`<name>#<slot>`) are labels too.
pub fn semaphore_name<'a>(
    argument: &'static str,
    value: &'a str,
) -> Result<&'a str, ArgumentError> {
    let chars = value.chars().count();
    match label(argument, value) {
        Err(ArgumentError::LabelTooLong { chars, .. }) => {
            Err(ArgumentError::SemaphoreNameTooLong { argument, chars })
        }
        Ok(_) if chars > MAX_SEMAPHORE_NAME_CHARS => {
            Err(ArgumentError::SemaphoreNameTooLong { argument, chars })
        }
        checked => checked,
    }
}

/// A lease: more than zero and at most a day, a month counting as 30 days.
pub fn lease(argument: &'static str, lease: Lease) -> Result<Lease, ArgumentError> {
    let micros = lease.as_micros();
    if micros <= 0 || micros > MAX_LEASE.as_micros() as i128 {
        return Err(ArgumentError::LeaseOutOfRange { argument, micros });
    }
    Ok(lease)
}

/// A wait: zero or more.
pub fn wait(argument: &'static str, wait: Lease) -> Result<Duration, ArgumentError> {
    let micros = wait.as_micros();
    if micros < 0 {
        return Err(ArgumentError::NegativeWait { argument, micros });
    }
    Ok(wait.as_duration())
}

/// A record version number: positive.
pub fn rvn(argument: &'static str, rvn: i64) -> Result<i64, ArgumentError> {
    if rvn <= 0 {
        return Err(ArgumentError::RvnNotPositive { argument, rvn });
    }
    Ok(rvn)
}

/// A lock's data: at most [`MAX_DATA_BYTES`].
pub fn data(data: &[u8]) -> Result<&[u8], ArgumentError> {
    if data.len() > MAX_DATA_BYTES {
        return Err(ArgumentError::DataTooLarge { bytes: data.len() });
    }
    Ok(data)
}

/// A semaphore's slot count: 1 to [`MAX_SLOTS`].
pub fn slots(argument: &'static str, slots: i64) -> Result<u32, ArgumentError> {
    match u32::try_from(slots) {
        Ok(count) if (1..=MAX_SLOTS).contains(&count) => Ok(count),
        _ => Err(ArgumentError::SlotsOutOfRange { argument, slots }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease_of(days: i32, micros: i64) -> Lease {
        Lease {
            months: 0,
            days,
            micros,
        }
    }

    #[test]
    fn labels_are_non_empty_short_and_without_nul() {
        assert_eq!(label("name", "jobs"), Ok("jobs"));
        assert_eq!(
            label("owner", ""),
            Err(ArgumentError::EmptyLabel { argument: "owner" })
        );
        let longest = "é".repeat(MAX_LABEL_CHARS);
        assert_eq!(label("name", &longest), Ok(longest.as_str()));
        assert_eq!(
            label("name", &"x".repeat(MAX_LABEL_CHARS + 1)),
            Err(ArgumentError::LabelTooLong {
                argument: "name",
                chars: MAX_LABEL_CHARS + 1
            })
        );
        assert_eq!(
            label("owner", "a\0b"),
            Err(ArgumentError::LabelContainsNul { argument: "owner" })
        );
    }

    #[test]
    fn leases_are_positive_and_at_most_a_day() {
        assert!(lease("lease", lease_of(0, 1)).is_ok());
        assert!(lease("lease", lease_of(1, 0)).is_ok());
        assert!(lease("lease", lease_of(1, 1)).is_err());
        assert!(lease("lease", lease_of(0, 0)).is_err());
        assert!(lease("lease", lease_of(0, -5_000_000)).is_err());
        let one_month = Lease {
            months: 1,
            days: 0,
            micros: 0,
        };
        assert_eq!(
            lease("lease", one_month),
            Err(ArgumentError::LeaseOutOfRange {
                argument: "lease",
                micros: 30 * 86_400_000_000
            })
        );
    }

    #[test]
    fn waits_are_not_negative() {
        assert_eq!(wait("wait_timeout", lease_of(0, 0)), Ok(Duration::ZERO));
        assert_eq!(
            wait("wait_timeout", lease_of(0, -1)),
            Err(ArgumentError::NegativeWait {
                argument: "wait_timeout",
                micros: -1
            })
        );
    }

    #[test]
    fn rvns_are_positive_and_data_limited() {
        assert_eq!(rvn("rvn", 1), Ok(1));
        assert!(rvn("rvn", 0).is_err() && rvn("rvn", i64::MIN).is_err());
        assert!(data(&vec![0; MAX_DATA_BYTES]).is_ok());
        assert_eq!(
            data(&vec![0; MAX_DATA_BYTES + 1]),
            Err(ArgumentError::DataTooLarge {
                bytes: MAX_DATA_BYTES + 1
            })
        );
    }

    #[test]
    fn semaphores_leave_room_for_their_slot_numbers_and_have_one_to_a_thousand_slots() {
        let longest = "é".repeat(MAX_SEMAPHORE_NAME_CHARS);
        assert_eq!(semaphore_name("name", &longest), Ok(longest.as_str()));
        for chars in [MAX_SEMAPHORE_NAME_CHARS + 1, MAX_LABEL_CHARS + 1] {
            assert_eq!(
                semaphore_name("name", &"x".repeat(chars)),
                Err(ArgumentError::SemaphoreNameTooLong {
                    argument: "name",
                    chars
                })
            );
        }
        assert_eq!(
            semaphore_name("name", ""),
            Err(ArgumentError::EmptyLabel { argument: "name" })
        );
        assert_eq!(slots("slots", 1), Ok(1));
        assert_eq!(slots("slots", 1000), Ok(1000));
        for bad in [0, -1, 1001, i64::from(i32::MIN), i64::MAX] {
            assert_eq!(
                slots("slots", bad),
                Err(ArgumentError::SlotsOutOfRange {
                    argument: "slots",
                    slots: bad
                })
            );
        }
    }
}
