//! The colour theme: the system's (`prefers-color-scheme`) unless this
//! browser chose light or dark. The choice is `data-theme` on `<html>`, which
//! the stylesheet reads (index.html sets it before the first paint too), and
//! is kept in `localStorage` by [`crate::storage`].

/// What the person chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Theme {
    System,
    Light,
    Dark,
}

impl Theme {
    /// The stored value; anything unknown follows the system.
    pub fn parse(stored: Option<&str>) -> Theme {
        match stored {
            Some("light") => Theme::Light,
            Some("dark") => Theme::Dark,
            _ => Theme::System,
        }
    }

    /// The value stored and set as `data-theme` (none for the system's).
    pub fn as_attr(self) -> Option<&'static str> {
        match self {
            Theme::System => None,
            Theme::Light => Some("light"),
            Theme::Dark => Some("dark"),
        }
    }

    /// The theme the toggle switches to next.
    pub fn next(self) -> Theme {
        match self {
            Theme::System => Theme::Light,
            Theme::Light => Theme::Dark,
            Theme::Dark => Theme::System,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Theme::System => "System theme",
            Theme::Light => "Light theme",
            Theme::Dark => "Dark theme",
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod dom {
    use leptos::prelude::*;

    use super::Theme;
    use crate::storage;

    /// Reads the saved theme, applies it and provides it to every page.
    pub fn provide_theme() {
        let theme = RwSignal::new(Theme::parse(storage::load_theme().as_deref()));
        Effect::new(move |_| apply(theme.get()));
        provide_context(theme);
    }

    pub fn use_theme() -> RwSignal<Theme> {
        expect_context::<RwSignal<Theme>>()
    }

    /// Sets `data-theme` and remembers the choice.
    fn apply(theme: Theme) {
        let Some(root) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.document_element()) else {
            return;
        };
        let _ = match theme.as_attr() {
            Some(value) => root.set_attribute("data-theme", value),
            None => root.remove_attribute("data-theme"),
        };
        storage::save_theme(theme.as_attr());
    }
}

#[cfg(target_arch = "wasm32")]
pub use dom::{provide_theme, use_theme};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_value_round_trips_and_unknown_follows_the_system() {
        for t in [Theme::System, Theme::Light, Theme::Dark] {
            assert_eq!(Theme::parse(t.as_attr()), t);
        }
        assert_eq!(Theme::parse(Some("purple")), Theme::System);
        assert_eq!(Theme::parse(None), Theme::System);
    }

    #[test]
    fn the_toggle_visits_every_theme() {
        assert_eq!(Theme::System.next(), Theme::Light);
        assert_eq!(Theme::Light.next(), Theme::Dark);
        assert_eq!(Theme::Dark.next(), Theme::System);
    }
}
