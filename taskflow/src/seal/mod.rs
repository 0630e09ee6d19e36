//! Arguments and results sealed at rest (feature `encryption`): a [`Keyring`] of named
//! 256-bit keys seals each value with XChaCha20-Poly1305 (HChaCha20 from RustCrypto's
//! `chacha20`, then ring's ChaCha20-Poly1305, as the construction is defined), a unique
//! nonce per value (a random prefix, then a counter), the key's id stored beside it, and the
//! task's id and the field bound in as associated data, so a sealed value copied onto another
//! task, or from the arguments to the result, does not open. New values use the primary key; every key of the
//! ring opens what it sealed, so keys rotate without rewriting anything first.
//!
//! A sealed value is stored as the JSON object `{"$sealed": "<key id>:<base64>"}` (no Rust
//! parameter can be named `$sealed`, so no argument object looks like one).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::XNonce;
use chacha20poly1305::aead::OsRng;
use chacha20poly1305::aead::rand_core::RngCore;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use serde_json::Value;
use zeroize::Zeroizing;

/// The field of a sealed value's JSON object.
pub(crate) const SEALED: &str = "$sealed";

/// How long a key is, in bytes.
pub const KEY_LEN: usize = 32;

/// One 256-bit key. Its bytes are wiped when it is dropped, and never shown: `Debug` prints
/// `Key(..)`.
#[derive(Clone)]
pub struct Key(Zeroizing<[u8; KEY_LEN]>);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// A key that cannot be used: the message says why, never what the key is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not 32 bytes.
    #[error("an encryption key must be {KEY_LEN} bytes; this one is {0}")]
    Length(usize),
    /// Not base64.
    #[error("an encryption key in base64 does not decode: {0}")]
    Base64(String),
    /// The environment variable is not set (or not Unicode).
    #[error("the environment variable `{0}` that should hold an encryption key is not set")]
    Missing(String),
    /// A key id that cannot be stored beside a sealed value.
    #[error("key id `{0}`: use 1 to 32 letters, digits, `-` or `_`")]
    Id(String),
    /// Two keys with one id.
    #[error("key id `{0}` is in the keyring twice")]
    Duplicate(String),
    /// No primary key.
    #[error("the keyring has no primary key: add one with `Keyring::primary`")]
    NoPrimary,
}

impl Key {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Key, KeyError> {
        let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|_| KeyError::Length(bytes.len()))?;
        Ok(Key(Zeroizing::new(bytes)))
    }

    /// A key written in standard base64 (44 characters), as `openssl rand -base64 32` prints.
    pub fn from_base64(text: &str) -> Result<Key, KeyError> {
        let bytes = Zeroizing::new(
            STANDARD.decode(text.trim()).map_err(|err| KeyError::Base64(err.to_string()))?,
        );
        Key::from_bytes(&bytes)
    }

    /// A key in base64 from the environment variable `name`.
    pub fn from_env(name: &str) -> Result<Key, KeyError> {
        let text =
            Zeroizing::new(std::env::var(name).map_err(|_| KeyError::Missing(name.to_owned()))?);
        Key::from_base64(&text)
    }
}

/// Named keys: the primary one seals, every one opens what it sealed.
///
/// ```
/// use taskflow::{Key, Keyring};
///
/// let old = Key::from_bytes(&[1; 32])?;
/// let new = Key::from_base64("AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=")?;
/// let keyring = Keyring::new().primary("k2", new)?.old("k1", old)?;
/// assert_eq!(keyring.primary_id(), Some("k2"));
/// assert_eq!(format!("{keyring:?}"), r#"Keyring { primary: Some("k2"), old: ["k1"] }"#);
/// # Ok::<(), taskflow::KeyError>(())
/// ```
#[derive(Clone, Default)]
pub struct Keyring {
    primary: Option<(String, Key)>,
    old: Vec<(String, Key)>,
    /// Shared by the ring's clones, so no two of them ever use one nonce.
    nonces: Arc<Nonces>,
    /// The primary key's subkey for this ring's nonce prefix, derived at its first use: every
    /// value this ring seals (and opens of its own) shares it. Replaced with the primary.
    sealer: Arc<OnceLock<LessSafeKey>>,
}

/// Unique nonces without a system call each: 16 random bytes drawn once per keyring, then a
/// counter. XChaCha20's 192-bit nonces only need to be unique per key; rings in other
/// processes draw other prefixes (two alike: one chance in 2^128).
struct Nonces {
    prefix: [u8; 16],
    next: AtomicU64,
}

impl Default for Nonces {
    fn default() -> Self {
        let mut prefix = [0; 16];
        OsRng.fill_bytes(&mut prefix);
        Nonces { prefix, next: AtomicU64::new(0) }
    }
}

impl Nonces {
    fn next(&self) -> XNonce {
        let mut nonce = XNonce::default();
        nonce[..16].copy_from_slice(&self.prefix);
        nonce[16..].copy_from_slice(&self.next.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        nonce
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let old: Vec<&str> = self.old.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Keyring").field("primary", &self.primary_id()).field("old", &old).finish()
    }
}

/// Why a sealed value did not open. Names the key, never the value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The keyring has no key of that id: the value waits until it is back.
    #[error("sealed with key `{0}`, which this keyring does not have")]
    MissingKey(String),
    /// The key is there but the value does not open: damaged, tampered with, moved from
    /// another task, or sealed with another key of the same id.
    #[error("key `{0}` cannot decrypt it (damaged, tampered with, or not sealed for this task)")]
    Decrypt(String),
    /// Not a sealed value this version can read.
    #[error("a damaged sealed value: {0}")]
    Malformed(String),
}

fn valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Keyring {
    /// An empty keyring; give it a [primary](Keyring::primary) key.
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// Seals new values with `key`, named `id`.
    pub fn primary(mut self, id: &str, key: Key) -> Result<Keyring, KeyError> {
        self.check(id)?;
        self.primary = Some((id.to_owned(), key));
        self.sealer = Arc::default();
        Ok(self)
    }

    /// Opens what `key`, named `id`, sealed, without sealing anything new with it.
    pub fn old(mut self, id: &str, key: Key) -> Result<Keyring, KeyError> {
        self.check(id)?;
        self.old.push((id.to_owned(), key));
        Ok(self)
    }

    fn check(&self, id: &str) -> Result<(), KeyError> {
        if !valid_id(id) {
            return Err(KeyError::Id(id.to_owned()));
        }
        if self.key(id).is_some() {
            return Err(KeyError::Duplicate(id.to_owned()));
        }
        Ok(())
    }

    /// Whether it holds a key named `id`.
    pub(crate) fn holds(&self, id: &str) -> bool {
        self.key(id).is_some()
    }

    /// The id of the key that seals.
    pub fn primary_id(&self) -> Option<&str> {
        self.primary.as_ref().map(|(id, _)| id.as_str())
    }

    /// Fails unless it has a primary key.
    pub(crate) fn checked(self) -> Result<Keyring, KeyError> {
        match self.primary {
            Some(_) => Ok(self),
            None => Err(KeyError::NoPrimary),
        }
    }

    fn key(&self, id: &str) -> Option<&Key> {
        self.primary.iter().chain(&self.old).find(|(key_id, _)| key_id == id).map(|(_, key)| key)
    }

    /// `value` sealed with the primary key for `field` of `owner` (a task's id, or a
    /// schedule's name). Without a primary key (a keyring that was not
    /// [checked](Keyring::checked)), `value` itself.
    pub(crate) fn seal(&self, owner: &str, field: &str, value: &Value) -> Value {
        let Some((id, key)) = &self.primary else { return value.clone() };
        // One buffer: the nonce, the value sealed in place after it, then the tag.
        let nonce = self.nonces.next();
        let mut bytes = Zeroizing::new(Vec::with_capacity(64));
        bytes.extend_from_slice(&nonce);
        serde_json::to_writer(&mut *bytes, value).expect("a JSON value serialises");
        let aad = associated(owner, field);
        let sealer = self.sealer.get_or_init(|| subkey(key, &nonce));
        let tag = sealer
            .seal_in_place_separate_tag(inner_nonce(&nonce), Aad::from(&aad), &mut bytes[24..])
            .expect("ChaCha20-Poly1305 seals any length a JSON value has");
        bytes.extend_from_slice(tag.as_ref());
        envelope(id, &bytes)
    }

    /// The value under `value` when it is sealed (for `field` of `owner`); `value` itself
    /// when it is not (written before encryption was turned on).
    pub(crate) fn open(&self, owner: &str, field: &str, value: &Value) -> Result<Value, OpenError> {
        let Some(text) = sealed_text(value) else { return Ok(value.clone()) };
        let (id, data) =
            text.split_once(':').ok_or_else(|| OpenError::Malformed("no key id".to_owned()))?;
        let key = self.key(id).ok_or_else(|| OpenError::MissingKey(id.to_owned()))?;
        let mut bytes = Zeroizing::new(
            STANDARD.decode(data).map_err(|err| OpenError::Malformed(err.to_string()))?,
        );
        if bytes.len() < 24 + 16 {
            return Err(OpenError::Malformed("too short".to_owned()));
        }
        let (nonce, sealed) = bytes.split_at_mut(24);
        let nonce = XNonce::from_slice(nonce);
        let aad = associated(owner, field);
        let own = match (&self.primary, self.sealer.get()) {
            (Some((primary, _)), Some(sealer))
                if primary == id && nonce[..16] == self.nonces.prefix =>
            {
                Some(sealer)
            }
            _ => None,
        };
        let derived;
        let opener = match own {
            Some(sealer) => sealer,
            None => {
                derived = subkey(key, nonce);
                &derived
            }
        };
        let plain = opener
            .open_in_place(inner_nonce(nonce), Aad::from(&aad), sealed)
            .map_err(|_| OpenError::Decrypt(id.to_owned()))?;
        serde_json::from_slice(plain).map_err(|err| OpenError::Malformed(err.to_string()))
    }
}

/// XChaCha20-Poly1305 as its definition builds it: ChaCha20-Poly1305 under the subkey that
/// HChaCha20 derives from the key and the first 16 bytes of the 24-byte nonce, with the last
/// 8 as the inner nonce (ring's assembly, much faster on short values than the portable and
/// AVX2 Poly1305 of RustCrypto, whose setup dominates a short message).
fn subkey(key: &Key, nonce: &XNonce) -> LessSafeKey {
    let mut derived = chacha20::hchacha::<chacha20::cipher::consts::U10>(
        chacha20::Key::from_slice(&*key.0),
        chacha20::cipher::generic_array::GenericArray::from_slice(&nonce[..16]),
    );
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    bytes.copy_from_slice(&derived);
    zeroize::Zeroize::zeroize(derived.as_mut_slice());
    let unbound =
        UnboundKey::new(&CHACHA20_POLY1305, &*bytes).expect("a 32-byte ChaCha20-Poly1305 key");
    LessSafeKey::new(unbound)
}

/// The inner 12-byte nonce of XChaCha20-Poly1305: four zero bytes, then the nonce's last 8.
fn inner_nonce(nonce: &XNonce) -> Nonce {
    let mut inner = [0; 12];
    inner[4..].copy_from_slice(&nonce[16..]);
    Nonce::assume_unique_for_key(inner)
}

/// The key id a sealed value names, if `value` is one.
pub(crate) fn sealed_with(value: &Value) -> Option<&str> {
    sealed_text(value).and_then(|text| text.split_once(':')).map(|(id, _)| id)
}

/// A sealed value as compact bytes, `<key id>:<nonce, sealed value, tag>` (no base64, no
/// JSON), for a store that keeps bytes (SQLite's BLOB); `None` if `value` is not sealed.
pub(crate) fn to_bytes(value: &Value) -> Option<Vec<u8>> {
    let (id, data) = sealed_text(value)?.split_once(':')?;
    let mut bytes = Vec::with_capacity(id.len() + 1 + data.len() / 4 * 3);
    bytes.extend_from_slice(id.as_bytes());
    bytes.push(b':');
    STANDARD.decode_vec(data, &mut bytes).ok()?;
    Some(bytes)
}

/// [`to_bytes`]'s output back to the sealed value; `None` if it is not such bytes.
pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Value> {
    let split = bytes.iter().position(|b| *b == b':')?;
    let id = std::str::from_utf8(&bytes[..split]).ok().filter(|id| valid_id(id))?;
    Some(envelope(id, &bytes[split + 1..]))
}

/// The stored form of `sealed` (nonce, sealed value, tag) under key `id`:
/// `{"$sealed": "<id>:<base64>"}`.
fn envelope(id: &str, sealed: &[u8]) -> Value {
    let mut text = String::with_capacity(id.len() + 1 + sealed.len().div_ceil(3) * 4);
    text.push_str(id);
    text.push(':');
    STANDARD.encode_string(sealed, &mut text);
    let mut envelope = serde_json::Map::with_capacity(1);
    envelope.insert(SEALED.to_owned(), Value::String(text));
    Value::Object(envelope)
}

fn sealed_text(value: &Value) -> Option<&str> {
    match value {
        Value::Object(map) if map.len() == 1 => map.get(SEALED)?.as_str(),
        _ => None,
    }
}

/// What binds a sealed value to its place: its owner and the field.
fn associated(owner: &str, field: &str) -> Vec<u8> {
    [b"taskflow:v1:", owner.as_bytes(), b":", field.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seal_of_a_ring_and_its_clones_takes_a_new_nonce() {
        let ring = Keyring::new().primary("k1", Key::from_bytes(&[7; 32]).unwrap()).unwrap();
        let clone = ring.clone();
        let value = serde_json::json!({ "card": "4111" });
        let nonce = |sealed: &Value| {
            let text = sealed_text(sealed).unwrap().split_once(':').unwrap().1.to_owned();
            STANDARD.decode(text).unwrap()[..24].to_vec()
        };
        let sealed: Vec<Value> = (0..4)
            .map(|n| if n % 2 == 0 { &ring } else { &clone }.seal("t1", "args", &value))
            .collect();
        let mut nonces: Vec<Vec<u8>> = sealed.iter().map(nonce).collect();
        nonces.sort();
        nonces.dedup();
        assert_eq!(nonces.len(), 4, "clones share one counter");
        for value in &sealed {
            assert_eq!(ring.open("t1", "args", value).unwrap()["card"], "4111");
        }
        let other = Keyring::new().primary("k1", Key::from_bytes(&[7; 32]).unwrap()).unwrap();
        assert_ne!(nonce(&other.seal("t1", "args", &value))[..16], nonces[0][..16], "new prefix");
    }

    #[test]
    fn sealed_values_go_to_bytes_and_back() {
        let ring = Keyring::new().primary("k-1", Key::from_bytes(&[3; 32]).unwrap()).unwrap();
        let value = serde_json::json!({ "card": "4111" });
        let sealed = ring.seal("t1", "args", &value);
        let bytes = to_bytes(&sealed).expect("sealed");
        assert!(bytes.len() < sealed.to_string().len() - 30, "smaller than the envelope");
        assert_eq!(from_bytes(&bytes).as_ref(), Some(&sealed));
        assert_eq!(ring.open("t1", "args", &from_bytes(&bytes).unwrap()).unwrap(), value);
        assert_eq!(to_bytes(&value), None, "not sealed");
        assert_eq!(from_bytes(b"no separator"), None);
        assert_eq!(from_bytes(b"bad id!:xyz"), None);
    }

    /// The cached sealing subkey belongs to one primary key: a clone given another primary
    /// seals with that one, and a ring opens what another ring of the same key sealed.
    #[test]
    fn the_cached_subkey_follows_the_primary_key() {
        let k1 = || Key::from_bytes(&[1; 32]).unwrap();
        let k2 = || Key::from_bytes(&[2; 32]).unwrap();
        let value = serde_json::json!({ "card": "4111" });
        let ring = Keyring::new().primary("k1", k1()).unwrap();
        let first = ring.seal("t1", "args", &value);
        let moved = ring.clone().primary("k2", k2()).unwrap();
        let second = moved.seal("t1", "args", &value);
        assert_eq!(sealed_with(&second), Some("k2"));
        let only_k2 = Keyring::new().primary("k2", k2()).unwrap();
        assert_eq!(only_k2.open("t1", "args", &second).unwrap(), value);
        assert_eq!(ring.open("t1", "args", &first).unwrap(), value);
        let same_key = Keyring::new().primary("k1", k1()).unwrap();
        assert_eq!(same_key.open("t1", "args", &first).unwrap(), value, "another prefix");
        assert_eq!(ring.open("t2", "args", &first), Err(OpenError::Decrypt("k1".to_owned())));
    }

    /// What this ring seals opens with RustCrypto's XChaCha20-Poly1305, and what that seals
    /// (every value stored before the two were told apart) opens here: one format.
    #[test]
    fn sealing_is_xchacha20_poly1305_as_rustcrypto_has_it() {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        let ring = Keyring::new().primary("k1", Key::from_bytes(&[9; 32]).unwrap()).unwrap();
        let theirs = chacha20poly1305::XChaCha20Poly1305::new((&[9u8; 32]).into());
        let aad = associated("t7", "args");
        let sealed = ring.seal("t7", "args", &serde_json::json!({ "card": "4111" }));
        let text = sealed_text(&sealed).unwrap().split_once(':').unwrap().1.to_owned();
        let bytes = STANDARD.decode(text).unwrap();
        let (nonce, data) = bytes.split_at(24);
        let plain = theirs
            .decrypt(XNonce::from_slice(nonce), Payload { msg: data, aad: &aad })
            .expect("RustCrypto opens it");
        assert_eq!(plain, br#"{"card":"4111"}"#);

        let nonce = XNonce::from([5; 24]);
        let data = theirs.encrypt(&nonce, Payload { msg: b"[1,2]", aad: &aad }).unwrap();
        let stored = serde_json::json!({
            SEALED: format!("k1:{}", STANDARD.encode([nonce.as_slice(), &data].concat()))
        });
        assert_eq!(ring.open("t7", "args", &stored).unwrap(), serde_json::json!([1, 2]));
        assert_eq!(ring.open("t8", "args", &stored), Err(OpenError::Decrypt("k1".to_owned())));
    }
}
