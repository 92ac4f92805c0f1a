//! How a semaphore's slots are named: ordinary lock names, `<name>#1` to
//! `<name>#<slots>`, which the server also reads back to wake a semaphore's
//! waiters when one of its slots is written.

/// The name of slot `slot` (counted from 1) of semaphore `name`.
pub fn slot_name(name: &str, slot: u32) -> String {
    format!("{name}#{slot}")
}

/// The semaphore and slot a lock name is a slot of, if it is one: `<name>#<k>`
/// with `k` from 1 to [`crate::limits::MAX_SLOTS`], written as [`slot_name`]
/// writes it.
pub fn semaphore_of(lock_name: &str) -> Option<(&str, u32)> {
    let (name, slot) = lock_name.rsplit_once('#')?;
    if slot.starts_with('0') || !slot.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let slot: u32 = slot.parse().ok()?;
    (1..=crate::limits::MAX_SLOTS)
        .contains(&slot)
        .then_some((name, slot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slots_name_says_which_semaphore_and_slot_it_is() {
        assert_eq!(semaphore_of(&slot_name("exports", 3)), Some(("exports", 3)));
        assert_eq!(semaphore_of("a#b#1000"), Some(("a#b", 1000)));
        for not_a_slot in [
            "exports",
            "exports#",
            "exports#0",
            "exports#01",
            "x#1001",
            "x#-1",
            "x#1a",
        ] {
            assert_eq!(semaphore_of(not_a_slot), None, "{not_a_slot}");
        }
    }
}
