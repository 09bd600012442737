use super::Glob;

#[test]
fn globs_match_case_insensitively_across_slashes() {
    let cases = [
        ("*/pricing*", "https://x.example/Pricing/plans", true),
        ("*/pricing*", "https://x.example/about", false),
        ("https://vet.example/", "HTTPS://VET.EXAMPLE/", true),
        ("https://vet.example/", "https://vet.example/x", false),
        ("offer-*", "offer-", true),
        ("*a*b*c*", "xxAyyBzzC", true),
        ("*a*b*c*", "xxcyybzza", false),
        ("x*long-middle*y", "x-short-y", false),
        ("a**b", "ab", true),
        ("a*a", "a", false),
        ("a*a", "aa", true),
        ("*", "", true),
        ("", "", true),
        ("", "x", false),
        ("web?nar*", "WEBINAR-q1", true),
        ("web?nar*", "webnar", false),
        ("*ÉTÉ*", "offre-été", true),
    ];
    for (pattern, text, want) in cases {
        assert_eq!(
            Glob::new(pattern).matches(text),
            want,
            "{pattern} on {text}"
        );
    }
    let long = format!("https://x.example/{}/PRICING/{}", "a".repeat(300), "b");
    assert!(
        Glob::new("*/pricing/*").matches(&long),
        "a window longer than the stack buffer"
    );
}

proptest::proptest! {
    /// The fast matcher of `*`-only ASCII patterns agrees with wildmatch.
    #[test]
    fn star_patterns_agree_with_wildmatch(
        pattern in "[aB/*]{0,8}",
        text in "[AbB/x]{0,12}",
    ) {
        let ours = Glob::new(&pattern).matches(&text);
        let theirs = wildmatch::WildMatch::new_case_insensitive(&pattern).matches(&text);
        proptest::prop_assert_eq!(ours, theirs, "{} on {}", pattern, text);
    }
}
