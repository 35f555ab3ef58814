//! Bounded identifiers of the wire contract, checked once where they enter and trusted after.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The rule one kind of identifier follows.
pub trait IdRule {
    /// What the identifier names, for errors ("device id").
    const WHAT: &'static str;
    const MIN: usize;
    const MAX: usize;
    /// The allowed characters, as a regular-expression class for the JSON Schema.
    const CLASS: &'static str;
    fn allowed(b: u8) -> bool;
}

/// An identifier that satisfies `R`: length and characters checked at construction.
pub struct Id<R>(String, PhantomData<R>);

/// Why a text is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be {min}-{max} characters of {class}, got {shown}")]
pub struct IdError {
    pub what: &'static str,
    pub min: usize,
    pub max: usize,
    pub class: &'static str,
    /// The offending text, cut to a length that is safe to log.
    pub shown: String,
}

/// Bounded, escaped copy of untrusted text for error messages and logs.
pub fn shown(text: &str) -> String {
    const SHOWN: usize = 40;
    if text.chars().count() <= SHOWN {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(SHOWN).collect();
        format!("{head:?}... ({} bytes)", text.len())
    }
}

impl<R: IdRule> Id<R> {
    pub fn new(text: impl Into<String>) -> Result<Self, IdError> {
        let text = text.into();
        if Self::valid(&text) {
            Ok(Id(text, PhantomData))
        } else {
            Err(IdError {
                what: R::WHAT,
                min: R::MIN,
                max: R::MAX,
                class: R::CLASS,
                shown: shown(&text),
            })
        }
    }

    pub fn valid(text: &str) -> bool {
        (R::MIN..=R::MAX).contains(&text.len()) && text.bytes().all(R::allowed)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl<R> Clone for Id<R> {
    fn clone(&self) -> Self {
        Id(self.0.clone(), PhantomData)
    }
}

impl<R> PartialEq for Id<R> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<R> Eq for Id<R> {}

impl<R> PartialOrd for Id<R> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<R> Ord for Id<R> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl<R> std::hash::Hash for Id<R> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl<R> std::ops::Deref for Id<R> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<R> AsRef<str> for Id<R> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<R> std::borrow::Borrow<str> for Id<R> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<R> fmt::Display for Id<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<R: IdRule> fmt::Debug for Id<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl<R: IdRule> std::str::FromStr for Id<R> {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Id::new(s)
    }
}

impl<R: IdRule> TryFrom<String> for Id<R> {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Id::new(s)
    }
}

impl<R> Serialize for Id<R> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de, R: IdRule> Deserialize<'de> for Id<R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(d)?;
        // Checked on the borrowed text: invalid input is never copied.
        if !Self::valid(&text) {
            return Err(serde::de::Error::custom(
                Id::<R>::new(text.chars().take(64).collect::<String>())
                    .err()
                    .map_or_else(|| format!("{} too long", R::WHAT), |e| e.to_string()),
            ));
        }
        Ok(Id(text.into_owned(), PhantomData))
    }
}

impl<R: IdRule> JsonSchema for Id<R> {
    fn schema_name() -> Cow<'static, str> {
        R::WHAT.replace(' ', "_").into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "minLength": R::MIN,
            "maxLength": R::MAX,
            "pattern": format!("^{}+$", R::CLASS),
        })
    }
}

/// Fleet, device and group names: lowercase letters, digits, `-`, `_`; they appear in topics.
pub enum NameRule {}
impl IdRule for NameRule {
    const WHAT: &'static str = "name";
    const MIN: usize = 1;
    const MAX: usize = 64;
    const CLASS: &'static str = "[a-z0-9_-]";
    fn allowed(b: u8) -> bool {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
    }
}

/// Offer, brand and SKU ids.
pub enum IdentRule {}
impl IdRule for IdentRule {
    const WHAT: &'static str = "id";
    const MIN: usize = 1;
    const MAX: usize = 64;
    const CLASS: &'static str = "[A-Za-z0-9._-]";
    fn allowed(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'
    }
}

/// A hashed shopper id: the first 16 bytes of HMAC-SHA256 under the fleet secret, in hex.
pub enum ShopperRule {}
impl IdRule for ShopperRule {
    const WHAT: &'static str = "hashed shopper id";
    const MIN: usize = 32;
    const MAX: usize = 32;
    const CLASS: &'static str = "[0-9a-f]";
    fn allowed(b: u8) -> bool {
        b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
    }
}

/// A claim code: 8 characters of Crockford base32 (no I, L, O, U).
pub enum ClaimCodeRule {}
impl IdRule for ClaimCodeRule {
    const WHAT: &'static str = "claim code";
    const MIN: usize = 8;
    const MAX: usize = 8;
    const CLASS: &'static str = "[0-9A-HJKMNP-TV-Z]";
    fn allowed(b: u8) -> bool {
        CLAIM_CODE_ALPHABET.contains(&b)
    }
}

/// A pickup code as typed at the counter or on a keypad: 4-16 of `0-9 A-Z`.
pub enum PickupCodeRule {}
impl IdRule for PickupCodeRule {
    const WHAT: &'static str = "pickup code";
    const MIN: usize = 4;
    const MAX: usize = 16;
    const CLASS: &'static str = "[0-9A-Z]";
    fn allowed(b: u8) -> bool {
        b.is_ascii_digit() || b.is_ascii_uppercase()
    }
}

/// The characters of claim codes: easy to read out and type on a keypad.
pub const CLAIM_CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A fleet, device or group name.
pub type Name = Id<NameRule>;
/// An offer, brand or SKU id.
pub type Ident = Id<IdentRule>;
/// A hashed shopper id.
pub type ShopperHash = Id<ShopperRule>;
/// A claim code.
pub type ClaimCode = Id<ClaimCodeRule>;

/// A pickup code: a secret the shopper holds. The device keeps only its keyed hash; its
/// `Debug` prints nothing of it.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PickupCode(Id<PickupCodeRule>);

impl JsonSchema for PickupCode {
    fn schema_name() -> Cow<'static, str> {
        Id::<PickupCodeRule>::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        Id::<PickupCodeRule>::json_schema(generator)
    }
}

impl<'de> Deserialize<'de> for PickupCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(d)?;
        if !Id::<PickupCodeRule>::valid(&text) {
            return Err(serde::de::Error::custom(format!(
                "pickup code must be {}-{} characters of {}",
                PickupCodeRule::MIN,
                PickupCodeRule::MAX,
                PickupCodeRule::CLASS
            )));
        }
        Ok(PickupCode(Id(text.into_owned(), PhantomData)))
    }
}

impl PickupCode {
    /// A code as a person typed it: spaces and dashes dropped, letters upper-cased.
    pub fn typed(text: &str) -> Result<PickupCode, IdError> {
        let clean: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .take(PickupCodeRule::MAX + 1)
            .collect();
        Id::new(clean).map(PickupCode).map_err(|mut e| {
            // Never echo a code, not even a wrong one.
            e.shown = "(hidden)".into();
            e
        })
    }

    /// The code itself, for hashing and for showing to its holder.
    pub fn reveal(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for PickupCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PickupCode(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_characters_are_enforced() {
        assert!(Name::new("demo-cinema-01").is_ok());
        assert!(Name::new("Demo").is_err());
        assert!(Name::new("").is_err());
        assert!(Name::new("a".repeat(65)).is_err());
        assert!(Ident::new("lumi-cola.3off_A").is_ok());
        assert!(Ident::new("a/b").is_err());
        assert!(ShopperHash::new("0123456789abcdef0123456789abcdef").is_ok());
        assert!(ShopperHash::new("0123456789ABCDEF0123456789abcdef").is_err());
        assert!(ClaimCode::new("7K3M9QXZ").is_ok());
        assert!(ClaimCode::new("7K3M9QXI").is_err());
        assert!(PickupCode::typed("4821-9930").is_ok());
        assert_eq!(PickupCode::typed(" ab12 ").unwrap().reveal(), "AB12");
        assert!(PickupCode::typed("12").is_err());
        assert!(PickupCode::typed("12345678901234567").is_err());
    }

    #[test]
    fn pickup_codes_never_print() {
        let code = PickupCode::typed("48219930").unwrap();
        assert_eq!(format!("{code:?}"), "PickupCode(***)");
        let err = PickupCode::typed("4821993$").unwrap_err().to_string();
        assert!(!err.contains("4821"), "{err}");
        let err = serde_json::from_str::<PickupCode>("\"4821993$\"")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("4821"), "{err}");
    }

    #[test]
    fn errors_show_a_bounded_copy_of_the_input() {
        let err = Name::new("x".repeat(70_000)).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
        let err = serde_json::from_str::<Name>(&format!("\"{}\"", "Q".repeat(70_000)))
            .unwrap_err()
            .to_string();
        assert!(err.len() < 300, "{}", err.len());
    }

    #[test]
    fn serde_round_trips() {
        let n: Ident = serde_json::from_str("\"lumi-cola\"").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"lumi-cola\"");
        assert!(serde_json::from_str::<Ident>("\"lumi cola\"").is_err());
    }
}
