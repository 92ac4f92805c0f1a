//! Typed lock data (feature `serde`): any `serde` value, kept in the lock's data
//! as JSON text in UTF-8, so that SQL reads the same bytes as `jsonb` with
//! `convert_from(data, 'UTF8')::jsonb` and writes them back with
//! `convert_to(value::text, 'UTF8')`.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::acquire::HeldBy;
use crate::error::Error;
use crate::lock::Lock;
use crate::options::AcquireOptions;
use crate::sql::LockInfo;

/// `value` as JSON text.
fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|error| Error::Data(Box::new(error)))
}

/// `data` read as the JSON of a `T`; `None` without data.
fn decode<T: DeserializeOwned>(data: Option<&[u8]>) -> Result<Option<T>, Error> {
    data.map(serde_json::from_slice)
        .transpose()
        .map_err(|error| Error::Data(Box::new(error)))
}

impl Lock {
    /// The lock's data (see [`Lock::data`]) read as the JSON of a `T`: `Ok(None)`
    /// if the lock has no data, [`Error::Data`] if it is not such JSON.
    ///
    /// ```no_run
    /// # use pglock_client::{AcquireOptions, Client, Error};
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Checkpoint {
    ///     day: String,
    ///     rows: u64,
    /// }
    ///
    /// # async fn run(client: Client) -> Result<(), Error> {
    /// let lock = client.acquire("nightly-report").await?;
    /// let mut checkpoint = lock.data_as::<Checkpoint>()?.unwrap_or(Checkpoint {
    ///     day: "2024-06-01".into(),
    ///     rows: 0,
    /// });
    /// checkpoint.rows += 1_000; // the work
    /// // A PL/pgSQL job reads it with convert_from(data, 'UTF8')::jsonb.
    /// lock.release_keeping_value(&checkpoint).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        decode(self.data())
    }

    /// [`Lock::release_keeping`] with `value` as the data, as JSON.
    ///
    /// A value that cannot be encoded (e.g. a map whose keys are not strings)
    /// fails with [`Error::Data`] before anything is sent: the lock is then
    /// dropped unreleased, and lapses after its lease like any dropped `Lock`.
    pub async fn release_keeping_value<T: Serialize + ?Sized>(
        self,
        value: &T,
    ) -> Result<(), Error> {
        let data = encode(value)?;
        self.release_keeping(Some(&data)).await
    }
}

impl AcquireOptions {
    /// [`AcquireOptions::data`] with `value` as the data, as JSON; [`Error::Data`]
    /// if it cannot be encoded.
    pub fn data_value<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, Error> {
        Ok(self.data(encode(value)?))
    }
}

impl HeldBy {
    /// The holder's data read as the JSON of a `T`, as [`Lock::data_as`] does.
    /// Another role's lock shows no data.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        decode(self.data.as_deref())
    }
}

impl LockInfo {
    /// The lock's data read as the JSON of a `T`, as [`Lock::data_as`] does.
    /// Another role's lock shows no data.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        decode(self.data.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;

    #[test]
    fn values_are_json_text() {
        let mut value = BTreeMap::new();
        value.insert("day", "2024-06-30");
        assert_eq!(encode(&value).unwrap(), br#"{"day":"2024-06-30"}"#);
        let options = AcquireOptions::new().data_value(&42u32).unwrap();
        assert_eq!(options, AcquireOptions::new().data(b"42".to_vec()));
    }

    #[test]
    fn no_data_is_none_and_other_data_an_error() {
        assert_eq!(decode::<u32>(None).unwrap(), None);
        assert_eq!(decode::<u32>(Some(b" 7 ")).unwrap(), Some(7));
        let error = decode::<u32>(Some(b"\"seven\"")).unwrap_err();
        assert!(matches!(error, Error::Data(_)), "{error:?}");
        assert_eq!(
            error.to_string(),
            "lock data (JSON): invalid type: string \"seven\", expected u32 at line 1 column 7"
        );
        assert!(decode::<u32>(Some(b"\xff")).is_err());
    }

    #[test]
    fn a_value_json_cannot_hold_is_refused_before_sending() {
        let mut map = HashMap::new();
        map.insert((1, 2), 3);
        let error = AcquireOptions::new().data_value(&map).unwrap_err();
        assert_eq!(error.to_string(), "lock data (JSON): key must be a string");
    }
}
