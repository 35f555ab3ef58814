//! The places a touchpoint can stand in, shared by profiles, config and offer targeting.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a touchpoint stands; offers target scenes and pacing follows each scene's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scene {
    Cinema,
    Community,
    Restaurant,
    Campus,
    Transit,
    Plaza,
    Vending,
}

impl Scene {
    /// Every scene, in declaration order.
    pub const ALL: [Scene; 7] = [
        Scene::Cinema,
        Scene::Community,
        Scene::Restaurant,
        Scene::Campus,
        Scene::Transit,
        Scene::Plaza,
        Scene::Vending,
    ];

    /// The snake_case name used in TOML, JSON and topic payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            Scene::Cinema => "cinema",
            Scene::Community => "community",
            Scene::Restaurant => "restaurant",
            Scene::Campus => "campus",
            Scene::Transit => "transit",
            Scene::Plaza => "plaza",
            Scene::Vending => "vending",
        }
    }
}

impl fmt::Display for Scene {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scene name that is not one of the seven.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown scene {given:?}; expected one of cinema, community, restaurant, campus, transit, plaza, vending"
)]
pub struct UnknownScene {
    /// The text that failed to parse.
    pub given: String,
}

impl FromStr for Scene {
    type Err = UnknownScene;

    /// Exact snake_case names only, so a typo in config is caught rather than guessed at.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scene::ALL
            .into_iter()
            .find(|scene| scene.as_str() == s)
            .ok_or_else(|| UnknownScene {
                given: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_from_str_round_trip() {
        for scene in Scene::ALL {
            assert_eq!(scene.to_string().parse::<Scene>(), Ok(scene));
        }
    }

    #[test]
    fn from_str_rejects_near_misses() {
        for bad in ["", "Cinema", "cinema ", "mall"] {
            let err = bad.parse::<Scene>().unwrap_err();
            assert!(err.to_string().contains("expected one of cinema"), "{err}");
        }
    }

    #[test]
    fn serde_name_matches_display() {
        #[derive(Deserialize, Serialize)]
        struct Wrap {
            scene: Scene,
        }
        for scene in Scene::ALL {
            let text = toml::to_string(&Wrap { scene }).unwrap();
            assert_eq!(text.trim(), format!("scene = \"{scene}\""));
            assert_eq!(toml::from_str::<Wrap>(&text).unwrap().scene, scene);
        }
    }
}
