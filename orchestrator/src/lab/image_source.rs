//! Where a service's image comes from: the mode asked for and the image chosen. Plain data
//! both the image maker (`images`) and the stack (`stack`) use, kept below both of them.

/// Where images come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImageMode {
    /// Pull; build locally when no registry answers.
    Auto,
    /// Always build locally.
    Offline,
    /// Pull only.
    Online,
}

impl std::str::FromStr for ImageMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" | "" => Ok(Self::Auto),
            "offline" | "1" | "true" => Ok(Self::Offline),
            "online" | "0" | "false" => Ok(Self::Online),
            other => Err(format!(
                "LAB_IMAGES: expected auto, offline or online, got `{other}`"
            )),
        }
    }
}

/// The image chosen for one service.
#[derive(Debug, Clone)]
pub struct ImageChoice {
    /// Image reference to run.
    pub image: String,
    pub image_id: Option<String>,
    pub version: String,
    /// True when the `x-lab-offline` variant is used (its entrypoint/command apply).
    pub offline_variant: bool,
    /// Why the service cannot run (no image obtainable), when so.
    pub unavailable: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn image_mode_from_env_values() {
        assert_eq!("auto".parse::<ImageMode>().unwrap(), ImageMode::Auto);
        assert_eq!("offline".parse::<ImageMode>().unwrap(), ImageMode::Offline);
        assert!("sometimes"
            .parse::<ImageMode>()
            .unwrap_err()
            .contains("LAB_IMAGES"));
    }
}
