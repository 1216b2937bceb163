//! The console's page, inside the binary: no Node build and no file to
//! install beside weir. Plain JavaScript that draws SVG; no libraries.

/// One file of the page.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
}

const FILES: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("../assets/index.html")),
    ("console.js", "text/javascript; charset=utf-8", include_bytes!("../assets/console.js")),
    ("console.css", "text/css; charset=utf-8", include_bytes!("../assets/console.css")),
];

/// The file called `name` (`""`: the page itself); names are matched
/// exactly, so no path can reach anything else.
pub fn asset(name: &str) -> Option<Asset> {
    let name = if name.is_empty() { "index.html" } else { name };
    FILES.iter().find(|(file, _, _)| *file == name).map(|&(_, content_type, body)| Asset { content_type, body })
}

/// The names of the page's files.
pub fn names() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|(name, _, _)| *name)
}
