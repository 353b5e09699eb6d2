//! The language of a request's text, as the APIs name it, parsed once at the edge (HTTP parameters, CLI flags).
//!
//! Codes are api2.py's `zh ja en auto all_zh all_ja` and api_v2's Cantonese/Korean ones (`yue ko all_yue all_ko
//! auto_yue`; v2 symbol tables only: with a v1 model the frontend refuses them with [`super::TextError::Unsupported`]). [`Language::from_api`]
//! also takes api.py's Chinese UI names (`中文`, `中英混合`, ...). The frontend functions take [`Language::code`].

/// A request language code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    /// Chinese with English words (`zh`, api.py `中英混合`).
    Zh,
    /// Japanese with English words (`ja`, `日英混合`).
    Ja,
    /// English (`en`, `英文`).
    En,
    /// Detected by script (`auto`, `多语种混合`).
    Auto,
    /// Chinese only (`all_zh`, `中文`).
    AllZh,
    /// Japanese only (`all_ja`, `日文`).
    AllJa,
    Yue,
    Ko,
    AllYue,
    AllKo,
    AutoYue,
    /// api_v2's `all_zh` (upstream's current `getTexts(text, "zh")`: Latin runs read as English), as opposed to
    /// api2's [`Language::AllZh`] (everything Chinese). Never parsed from a request: `/tts` maps `all_zh` to it.
    AllZhUpstream,
}

impl Language {
    pub const ALL: [Language; 11] = [
        Language::Zh,
        Language::Ja,
        Language::En,
        Language::Auto,
        Language::AllZh,
        Language::AllJa,
        Language::Yue,
        Language::Ko,
        Language::AllYue,
        Language::AllKo,
        Language::AutoYue,
    ];

    /// The code the frontend and api_v2 use.
    pub fn code(self) -> &'static str {
        match self {
            Language::Zh => "zh",
            Language::Ja => "ja",
            Language::En => "en",
            Language::Auto => "auto",
            Language::AllZh => "all_zh",
            Language::AllJa => "all_ja",
            Language::Yue => "yue",
            Language::Ko => "ko",
            Language::AllYue => "all_yue",
            Language::AllKo => "all_ko",
            Language::AutoYue => "auto_yue",
            Language::AllZhUpstream => super::langseg::ALL_ZH_V2,
        }
    }

    /// api.py's name for it in its UI (which its API also accepts).
    fn ui_name(self) -> &'static str {
        match self {
            Language::Zh => "中英混合",
            Language::Ja => "日英混合",
            Language::En => "英文",
            Language::Auto => "多语种混合",
            Language::AllZh => "中文",
            Language::AllJa => "日文",
            Language::Yue => "粤英混合",
            Language::Ko => "韩英混合",
            Language::AllYue => "粤语",
            Language::AllKo => "韩文",
            Language::AutoYue => "多语种混合(粤语)",
            Language::AllZhUpstream => "中文",
        }
    }

    /// A code, case-insensitive (api_v2's `text_lang`).
    pub fn from_code(s: &str) -> Option<Language> {
        let lower = s.to_lowercase();
        Language::ALL.into_iter().find(|l| l.code() == lower)
    }

    /// A code or one of api.py's Chinese names, case-insensitive (api2 / api.py `text_language`).
    pub fn from_api(s: &str) -> Option<Language> {
        let lower = s.to_lowercase();
        Language::ALL.into_iter().find(|l| l.code() == lower || l.ui_name() == lower)
    }

    /// api_v2's reading of this code: `all_zh` is upstream's current one ([`Language::AllZhUpstream`]).
    pub fn for_api_v2(self) -> Language {
        if self == Language::AllZh { Language::AllZhUpstream } else { self }
    }

    /// English text gets `.` where other languages get `。` when cutting.
    pub fn is_english(self) -> bool {
        self == Language::En
    }
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names() {
        assert_eq!(Language::from_api("ZH"), Some(Language::Zh));
        assert_eq!(Language::from_api("中文"), Some(Language::AllZh));
        assert_eq!(Language::from_api("多语种混合(粤语)"), Some(Language::AutoYue));
        assert_eq!(Language::from_api("fr"), None);
        assert_eq!(Language::from_code("中文"), None);
        assert_eq!(Language::from_code("All_Ja"), Some(Language::AllJa));
        for l in Language::ALL {
            assert_eq!(Language::from_code(l.code()), Some(l));
        }
    }
}
