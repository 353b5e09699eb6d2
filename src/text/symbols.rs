//! Phone symbol tables of GPT-SoVITS (v1: 322 symbols, v2: 732 symbols).
//!
//! In: a phone string. Out: its id (= index in the table). Both tables are embedded from
//! `export/symbols/v{1,2}.json` (the same lists the export writes into every bundle manifest),
//! so no run-time file is needed. A bundle may also carry its own list: [`SymbolTable::from_list`].

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::TextError;

/// Which symbol table (and which Chinese frontend) to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SymbolVersion {
    V1,
    V2,
}

impl SymbolVersion {
    /// Parses "v1" / "v2" (also "v2pro", "v2proplus", "v3", "v4": they all use the v2 table).
    pub fn parse(s: &str) -> Result<Self, TextError> {
        match s {
            "v1" => Ok(Self::V1),
            "v2" | "v2pro" | "v2proplus" | "v3" | "v4" => Ok(Self::V2),
            other => Err(TextError::UnknownVersion(other.to_string())),
        }
    }
}

/// An ordered phone list with a reverse index.
#[derive(Debug, Clone)]
pub struct SymbolTable {
    symbols: Vec<String>,
    index: HashMap<String, i64>,
}

#[derive(Deserialize)]
struct SymbolFile {
    symbols: Vec<String>,
}

impl SymbolTable {
    /// Builds a table from an ordered list (phone id = position).
    pub fn from_list(symbols: Vec<String>) -> Self {
        let mut index = HashMap::with_capacity(symbols.len());
        for (i, s) in symbols.iter().enumerate() {
            index.entry(s.clone()).or_insert(i as i64);
        }
        Self { symbols, index }
    }

    /// Parses `{"symbols": [...]}` (the export's format) or a bare JSON list.
    pub fn from_json(json: &str) -> Result<Self, TextError> {
        let list: Vec<String> = match serde_json::from_str::<SymbolFile>(json) {
            Ok(f) => f.symbols,
            Err(_) => serde_json::from_str(json).map_err(|e| TextError::Data(format!("symbol list: {e}")))?,
        };
        Ok(Self::from_list(list))
    }

    /// The embedded table of a version.
    pub fn builtin(version: SymbolVersion) -> &'static SymbolTable {
        static V1: OnceLock<SymbolTable> = OnceLock::new();
        static V2: OnceLock<SymbolTable> = OnceLock::new();
        match version {
            SymbolVersion::V1 => V1.get_or_init(|| {
                Self::from_json(include_str!("../../export/symbols/v1.json")).unwrap_or_else(|_| Self::from_list(Vec::new()))
            }),
            SymbolVersion::V2 => V2.get_or_init(|| {
                Self::from_json(include_str!("../../export/symbols/v2.json")).unwrap_or_else(|_| Self::from_list(Vec::new()))
            }),
        }
    }

    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    pub fn symbols(&self) -> &[String] {
        &self.symbols
    }

    pub fn contains(&self, phone: &str) -> bool {
        self.index.contains_key(phone)
    }

    pub fn id(&self, phone: &str) -> Option<i64> {
        self.index.get(phone).copied()
    }

    /// Phones not in the table become "UNK" (as upstream's `clean_text` does).
    pub fn map_unknown(&self, phones: Vec<String>) -> Vec<String> {
        phones.into_iter().map(|p| if self.contains(&p) { p } else { "UNK".to_string() }).collect()
    }

    /// Ids of phones; a phone missing from the table is an error.
    pub fn ids(&self, phones: &[String]) -> Result<Vec<i64>, TextError> {
        phones.iter().map(|p| self.id(p).ok_or_else(|| TextError::UnknownPhone(p.clone()))).collect()
    }
}
