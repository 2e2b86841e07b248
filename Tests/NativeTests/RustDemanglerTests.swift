import Foundation
import XCTest

@testable import Native

/// Rust names through `Demangler.demangle`. The real symbols were taken with `nm` from a small crate (generics, trait
/// impls, closures, `impl Describe for Vec<T>`, const generics, many kinds of types) built by rustc 1.95 once with
/// `-C symbol-mangling-version=v0` and once with `-Z unstable-options -C symbol-mangling-version=legacy`, and from
/// rustc's own librustc_driver; each expectation is what rustc-demangle's alternate form (`{:#}`) prints for it.
final class RustDemanglerTests: XCTestCase {
    private func assertDemangles(
        _ expectations: KeyValuePairs<String, String>, file: StaticString = #filePath, line: UInt = #line
    ) {
        for (mangled, expected) in expectations {
            XCTAssertEqual(Demangler.demangle(mangled), expected, mangled, file: file, line: line)
        }
    }

    private func assertUnchanged(_ names: [String], file: StaticString = #filePath, line: UInt = #line) {
        for name in names {
            XCTAssertEqual(Demangler.demangle(name), name, file: file, line: line)
        }
    }

    // MARK: Legacy

    func testLegacySymbolsOfABuiltCrateLoseTheirHashAndEscapes() {
        assertDemangles([
            "_ZN4demo4main17h38e95565b6f46d0eE": "demo::main",
            "_ZN4demo14Point$LT$T$GT$3sum17haa3e6fa7d27245d0E": "demo::Point<T>::sum",
            "_ZN4demo9apply_all28_$u7b$$u7b$closure$u7d$$u7d$17h0c1dc6de42c8cf3aE": "demo::apply_all::{{closure}}",
            "_ZN57_$LT$demo..Point$LT$f64$GT$$u20$as$u20$demo..Describe$GT$8describe17hebdf0448ea548fbfE":
                "<demo::Point<f64> as demo::Describe>::describe",
            "_ZN59_$LT$alloc..vec..Vec$LT$T$GT$$u20$as$u20$demo..Describe$GT$8describe17h01d548040e53846cE":
                "<alloc::vec::Vec<T> as demo::Describe>::describe",
            "_ZN77_$LT$demo..nested..deeper..Wrapper$LT$T$GT$$u20$as$u20$core..fmt..Display$GT$3fmt17he4f5511b74fdd103E":
                "<demo::nested::deeper::Wrapper<T> as core::fmt::Display>::fmt",
            "_ZN42_$LT$$RF$T$u20$as$u20$core..fmt..Debug$GT$3fmt17h1881660c54a62c48E": "<&T as core::fmt::Debug>::fmt",
            "_ZN102_$LT$core..iter..adapters..map..Map$LT$I$C$F$GT$$u20$as$u20$core..iter..traits..iterator..Iterator$GT$4fold17h2636ecbfc34beefeE":
                "<core::iter::adapters::map::Map<I,F> as core::iter::traits::iterator::Iterator>::fold",
            // `grüße`: code points as `$u…$` escapes.
            "_ZN4demo6nested6deeper13gr$ufc$$udf$e17h7c92b42839624397E": "demo::nested::deeper::grüße",
        ])
    }

    func testLegacySuffixesAndDarwinsUnderscore() {
        assertDemangles([
            // ThinLTO's `.llvm.<digits>` is dropped (from an opt-level=3 build).
            "_ZN3std2rt10lang_start28_$u7b$$u7b$closure$u7d$$u7d$17hc6ac2921ddeee6e5E.llvm.2489312990426400572":
                "std::rt::lang_start::{{closure}}",
            "_ZN4core3ops8function6FnOnce40call_once$u7b$$u7b$vtable.shim$u7d$$u7d$17he86b06e89e6b508aE.llvm.2489312990426400572":
                "core::ops::function::FnOnce::call_once{{vtable.shim}}",
            // Other `.` words are kept: they tell apart parts of one function.
            "_ZN4demo4main17h38e95565b6f46d0eE.cold": "demo::main.cold",
            "__ZN4demo4main17h38e95565b6f46d0eE": "demo::main",
        ])
    }

    func testLegacyEscapes() {
        assertDemangles([
            "_ZN4test36$SP$$BP$$RF$$LT$$GT$$LP$$RP$$C$$u7e$17h0123456789abcdefE": "test::@*&<>(),~",
            // A leading `_$` is rustc's way to start a component with `$`.
            "_ZN4test4_$C$17h0123456789abcdefE": "test::,",
            // Not escapes: printed as they are, like rustc-demangle does.
            "_ZN4test5a$XY$17h0123456789abcdefE": "test::a$XY$",
            "_ZN4test4a$u017h0123456789abcdefE": "test::a$u0",
            "_ZN4test5$u0$a17h0123456789abcdefE": "test::$u0$a",  // a control character
            "_ZN4test6a.b..c17h0123456789abcdefE": "test::a.b::c",
            "_ZN4test10_$LT$x$GT$17h0123456789abcdefE": "test::<x>",
            "_ZN4test9$u1f600$x17h0123456789abcdefE": "test::😀x",
            "_ZN4test7$uD800$17h0123456789abcdefE": "test::$uD800$",  // upper-case hex is not rustc's
        ])
    }

    func testZNNamesWithoutARustHashStayWithTheCxxDemangler() {
        assertDemangles([
            "_ZN3foo3barEi": "foo::bar(int)",
            // 15 hex digits: not rustc's hash, so C++ (which prints the component as it is).
            "_ZN4demo4main16h38e95565b6f46d0E": "demo::main::h38e95565b6f46d0",
            "_ZN4demo4main17h38e95565b6f46d0eEi": "demo::main::h38e95565b6f46d0e(int)",
            "_ZNSt6vectorIiSaIiEE9push_backERKi": "std::vector<int, std::allocator<int> >::push_back(int const&)",
        ])
    }

    // MARK: v0

    func testV0SymbolsOfABuiltCrate() {
        assertDemangles([
            "_RNvCs2ndz2m94zur_4demo4main": "demo::main",
            "_RINvCs2ndz2m94zur_4demo7largesttEB2_": "demo::largest::<u16>",
            "_RNvMCs2ndz2m94zur_4demoINtB2_5PointhE3sumB2_": "<demo::Point<u8>>::sum",
            "_RNvXs0_Cs2ndz2m94zur_4demoINtB5_5PointdENtB5_8Describe8describe":
                "<demo::Point<f64> as demo::Describe>::describe",
            "_RNvXs_Cs2ndz2m94zur_4demoINtNtCslNYArtu3iFV_5alloc3vec3VecmENtB4_8Describe8describeB4_":
                "<alloc::vec::Vec<u32> as demo::Describe>::describe",
            "_RNvXNtNtCs2ndz2m94zur_4demo6nested6deeperINtB2_7WrapperlENtNtCsgEmfK2I1SDS_4core3fmt7Display3fmtB6_":
                "<demo::nested::deeper::Wrapper<i32> as core::fmt::Display>::fmt",
            "_RNCNvCs2ndz2m94zur_4demo9apply_alls_0B3_": "demo::apply_all::{closure#1}",
            "_RNCINvCs2ndz2m94zur_4demo5fixedKj3_E0B4_": "demo::fixed::<3>::{closure#0}",
            "_RINvXs2R_NtNtCsgEmfK2I1SDS_4core5slice4iterINtB7_7IterMutxENtNtNtNtBb_4iter6traits8iterator8Iterator8for_eachNCNvCs2ndz2m94zur_4demo9apply_all0EB1N_":
                "<core::slice::iter::IterMut<i64> as core::iter::traits::iterator::Iterator>::for_each::<demo::apply_all::{closure#0}>",
            "_RNSNvYNCNvCs2ndz2m94zur_4demo4main0INtNtNtCsgEmfK2I1SDS_4core3ops8function6FnOnceTReEE9call_once6vtableB8_":
                "<demo::main::{closure#0} as core::ops::function::FnOnce<(&str,)>>::call_once::{shim:vtable#0}",
            // `Y`: a trait's own item, called on `str`'s `to_owned`.
            "_RNvYNvYeNtNtCslNYArtu3iFV_5alloc6borrow7ToOwned8to_ownedINtNtNtCsgEmfK2I1SDS_4core3ops8function6FnOnceTReEE9call_onceCs2ndz2m94zur_4demo":
                "<<str as alloc::borrow::ToOwned>::to_owned as core::ops::function::FnOnce<(&str,)>>::call_once",
            "_RINvXs_NvMNtCslNYArtu3iFV_5alloc5sliceSp9to_vec_inhNtB5_10ConvertVec6to_vecNtNtBa_5alloc6GlobalECs2ndz2m94zur_4demo":
                "<u8 as <[_]>::to_vec_in::ConvertVec>::to_vec::<alloc::alloc::Global>",
            // Punycode: `grüße`.
            "_RNvNtNtCs2ndz2m94zur_4demo6nested6deeperu9gre_6ka8l": "demo::nested::deeper::grüße",
            "_RINvNtCs2ndz2m94zur_4demo5types5flagsKb1_Kc78_Kln7_EB4_": "demo::types::flags::<true, 'x', -7>",
        ])
    }

    func testV0TypesOfABuiltCrate() {
        assertDemangles([
            "_RINvNtCs2ndz2m94zur_4demo5types8identityAhj3_EB4_": "demo::types::identity::<[u8; 3]>",
            "_RINvNtCs2ndz2m94zur_4demo5types8identityFG_RL0_eERL0_eEB4_":
                "demo::types::identity::<for<'a> fn(&'a str) -> &'a str>",
            "_RINvNtCs2ndz2m94zur_4demo5types8identityFUKCOhEuEB4_": "demo::types::identity::<unsafe extern \"C\" fn(*mut u8)>",
            "_RINvNtCs2ndz2m94zur_4demo5types8identityFlEbEB4_": "demo::types::identity::<fn(i32) -> bool>",
            "_RINvNtCs2ndz2m94zur_4demo5types8identityINtNtCslNYArtu3iFV_5alloc5boxed3BoxDNtNtNtNtCsgEmfK2I1SDS_4core4iter6traits8iterator8Iteratorp4ItemhNtNtB1k_6marker4SendEL_EEB4_":
                "demo::types::identity::<alloc::boxed::Box<dyn core::iter::traits::iterator::Iterator<Item = u8> + core::marker::Send>>",
            "_RINvNtCs2ndz2m94zur_4demo5types8identityOTtcEEB4_": "demo::types::identity::<*mut (u16, char)>",
            "_RINvNtCs2ndz2m94zur_4demo5types8identityPhEB4_": "demo::types::identity::<*const u8>",
            "_RINvNtCs2ndz2m94zur_4demo5types8identityQSnEB4_": "demo::types::identity::<&mut [i128]>",
            "_RINvNtCs2ndz2m94zur_4demo5types8identityRARej2_EB4_": "demo::types::identity::<&[&str; 2]>",
            "_RINvNtCs2ndz2m94zur_4demo5types8identityRDG_INtNtNtCsgEmfK2I1SDS_4core3ops8function2FnTRL0_eEEp6OutputjEL_EB4_":
                "demo::types::identity::<&dyn for<'a> core::ops::function::Fn<(&'a str,), Output = usize>>",
            "_RINvNtCs2ndz2m94zur_4demo5types8identityTbEEB4_": "demo::types::identity::<(bool,)>",
            "_RINvNtCs2ndz2m94zur_4demo5types8identityuEB4_": "demo::types::identity::<()>",
        ])
    }

    func testV0CratesDisambiguatorsAndSuffixes() {
        assertDemangles([
            "_RNvCs1234_7mycrate3foo": "mycrate::foo",
            "__RNvCs1234_7mycrate3foo": "mycrate::foo",
            // The instantiating crate is not printed.
            "_RNvCs1234_7mycrate3fooCs5678_5other": "mycrate::foo",
            "_RNCINvNtCsjrHSEGnQ3l9_3std2rt10lang_startuE0Cs2ndz2m94zur_4demo.llvm.1306616361646904312":
                "std::rt::lang_start::<()>::{closure#0}",
            "_RNvCs1234_7mycrate3foo.0.0": "mycrate::foo.0.0",
            // Not ThinLTO's suffix (lower-case hex), so kept like any other.
            "_RNvCs1234_7mycrate3foo.llvm.01ab": "mycrate::foo.llvm.01ab",
            "_RNCNvCs1234_7mycrate3foos0_3bar": "mycrate::foo::{closure:bar#2}",
            "_RNvNtCs1234_7mycrate3foo0": "mycrate::foo",
            "_RNvMs_C3fooNtB4_3Bar3new": "<foo::Bar>::new",
            "_RNvYNtC3foo3BarNtC3foo5Trait6method": "<foo::Bar as foo::Trait>::method",
        ])
    }

    func testV0ConstantsLifetimesAndRareTypes() {
        assertDemangles([
            "_RINvCs1234_7mycrate3fooKRe616263_E": "mycrate::foo::<\"abc\">",
            "_RINvCs1234_7mycrate3fooKVNtC3foo3BarS1xh7b_1yTb1_c76_EEE": "mycrate::foo::<{foo::Bar { x: 123, y: (true, 'v') }}>",
            "_RINvCs1234_7mycrate3fooKVNvINtNtC4core6option6OptionjE4SomeTj0_EE":
                "mycrate::foo::<{core::option::Option::<usize>::Some(0)}>",
            "_RINvCs1234_7mycrate3fooKc27_Kc5c_Kca_KRe22090a_E": #"mycrate::foo::<'\'', '\\', '\n', "\"\t\n">"#,
            "_RINvCs1234_7mycrate3fooKc2202_KRee28882c3bc_E": "mycrate::foo::<'∂', \"∂ü\">",
            "_RINvCs1234_7mycrate3fooKRec2a0_Kc301_E": #"mycrate::foo::<"\u{a0}", '\u{301}'>"#,
            "_RINvCs1234_7mycrate3fooKoffffffffffffffffff_Kxn80_E": "mycrate::foo::<0xffffffffffffffffff, -128>",
            "_RMC0FG0_KCRL0_eEu": "<for<'a, 'b> extern \"C\" fn(&'b str)>",
            "_RINvCs1234_7mycrate3fooFG1_RL0_eRL1_eEuE": "mycrate::foo::<for<'a, 'b, 'c> fn(&'c str, &'b str)>",
            "_RINvCs1234_7mycrate3fooFUK8C_unwindEuE": "mycrate::foo::<unsafe extern \"C-unwind\" fn()>",
            "_RINvCs1234_7mycrate3fooDG_NtC3std5TraitEL_E": "mycrate::foo::<dyn for<'a> std::Trait>",
            "_RINvCs1234_7mycrate3fooOPQRL_uE": "mycrate::foo::<*mut *const &mut &()>",
            "_RINvCs1234_7mycrate3fooWmRm1_m9_E": "mycrate::foo::<u32 is 1..=9>",
        ])
    }

    /// librustc_driver's deepest symbol: iterator adapters nest 16 `Chain`s deep, past 88 levels of the grammar.
    func testV0DeeplyNestedRealSymbol() {
        let mangled =
            "_RNvXs0_NtNtNtCs8NwYtU1Mohg_4core4iter8adapters3mapINtB5_3MapIBN_IBN_INtNtB7_5chain5ChainIBN_INtNtB7_6filter6FilterIBN_INtNtB7_6cloned6ClonedIB15_IB15_IB15_IB15_IB15_IB15_IB15_IB15_IB15_IB15_IB15_IB15_IB15_IB15_IB15_IB15_INtNtNtB9_7sources5empty5EmptyRTReNtNtCsk08wTpDC9h5_12rustc_target15target_features9StabilityRSB42_EEINtNtNtBb_5slice4iter4IterB41_EEB59_EB59_EB59_EB59_EB59_EB59_EB59_EB59_EB59_EB59_EB59_EB59_EB59_EB59_EB59_EENCNvB46_17all_rust_features0ENCNvMs1_NtNtCs1I33n4nKwkQ_13rustc_session6config3cfgNtB7u_8CheckCfg15fill_well_knowns1_0ENCB7o_s2_0EIB1T_IB5a_B42_EEENvMs8_NtCs6IqgnrtlzSn_10rustc_span6symbolNtB9l_6Symbol6internENcNtINtNtBb_6option6OptionB9U_E4Some0ENCINvXs8_NtCsfzxCEe6FjLs_9hashbrown3setINtBb0_7HashSetBaj_NtCsfRZ3y7WvlIw_10rustc_hash13FxBuildHasherEINtNtNtB9_6traits7collect6ExtendBbJ_E6extendBW_E0ENtNtBcA_8iterator8Iterator9size_hintB7y_"
        let demangled = Demangler.demangle(mangled)
        XCTAssertTrue(demangled.hasPrefix("<core::iter::adapters::map::Map<core::iter::adapters::map::Map<"), demangled)
        let tail = ">::{closure#0}> as core::iter::traits::iterator::Iterator>::size_hint"
        XCTAssertTrue(demangled.hasSuffix(tail), demangled)
        XCTAssertEqual(demangled.utf8.count, 5541)
    }

    // MARK: Malformed and hostile names

    func testMalformedV0NamesAreUnchanged() {
        assertUnchanged([
            "_R", "_RNvC", "_Rx", "_RNvCs1234_7mycrate3fooE", "_RNvCs1234_7mycrate3foo x", "_RNvCs1234_7mycrate3foo_x",
            // A lifetime that no binder introduced.
            "_RINvCs1234_7mycrate3fooDNtC3std5TraitEL1_E",
            // A `bool` that is 2, a `str` of half a byte, bytes that are not UTF-8.
            "_RINvCs1234_7mycrate3fooKb2_E", "_RINvCs1234_7mycrate3fooKRe6_E", "_RINvCs1234_7mycrate3fooKRec3_E",
            // Not ASCII.
            "_RNvCs1234_7mycrate3fää",
        ])
    }

    func testTruncatedNamesAreUnchangedOrAShorterValidName() {
        let real = "_RNvXs_Cs2ndz2m94zur_4demoINtNtCslNYArtu3iFV_5alloc3vec3VecmENtB4_8Describe8describeB4_"
        for length in 0..<real.count {
            let truncated = String(real.prefix(length))
            let demangled = Demangler.demangle(truncated)
            // Only the prefix that ends before the instantiating crate's back-reference is itself a symbol.
            if length == real.count - 3 {
                XCTAssertEqual(demangled, "<alloc::vec::Vec<u32> as demo::Describe>::describe")
            } else {
                XCTAssertEqual(demangled, truncated)
            }
        }
        let legacy = "_ZN4demo4main17h38e95565b6f46d0eE"
        for length in 0..<legacy.count {
            let truncated = String(legacy.prefix(length))
            XCTAssertFalse(Demangler.demangle(truncated).contains("demo::main"), truncated)
        }
    }

    func testBackReferencesToThemselvesOrForwardAreUnchanged() {
        assertUnchanged([
            // To itself.
            "_RB_", "_RNvB0_3foo",
            // Forward, past the end, and to a position whose number overflows.
            "_RNvB5_3foo3bar", "_RNvBzz_3foo", "_RNvBZZZZZZZZZZZZZZZZZZZZZZZZ_3foo",
            // To an enclosing path: a cycle, cut by the nesting bound.
            "_RNvNvB_3foo3bar", "_RIC1aB_E",
        ])
    }

    func testHostileNamesAreRefusedQuickly() {
        var hostile: [String] = []
        // Back-references that double the output at each level: 2^40 copies of `_`, past every output bound.
        hostile.append(doublingTuples(after: "MC0", levels: 40))
        // The same inside an impl's path, which is parsed but not printed, so its back-references are not followed.
        hostile.append(doublingTuples(after: "NvMINvC1a1b", levels: 40) + "Eu3foo")
        // Nesting without back-references: references of references, slices of slices.
        hostile.append("_RINvC1a1b" + String(repeating: "R", count: 4000) + "uE")
        hostile.append("_RINvC1a1b" + String(repeating: "S", count: 4000) + "uE")
        hostile.append("_R" + String(repeating: "N", count: 4000))
        // Nesting through back-references to an earlier `R…`, hidden inside an identifier.
        hostile.append("_RIC3000" + String(repeating: "R", count: 3000) + "B5_E")
        // Lengths and numbers past every bound.
        hostile.append("_RNvC99999999999999999999993foo")
        hostile.append("_RNvCs" + String(repeating: "Z", count: 100) + "_3foo3bar")
        hostile.append("_RINvC1a1bFG" + String(repeating: "Z", count: 10) + "_EuE")
        hostile.append("_RINvC1a1bFGZZZ_EuE")
        hostile.append("_ZN99999999999999999999999foo17h0123456789abcdefE")
        hostile.append("_RNvC1au" + "4000_" + String(repeating: "a", count: 3990))
        for name in hostile {
            let start = Date()
            let demangled = Demangler.demangle(name)
            let elapsed = Date().timeIntervalSince(start)
            XCTAssertLessThanOrEqual(demangled.utf8.count, Demangler.maximumDemangledLength, String(name.prefix(80)))
            // Generous for a debug build on a loaded machine; unbounded work would take hours.
            XCTAssertLessThan(elapsed, 2, String(name.prefix(80)))
        }
        XCTAssertEqual(Demangler.demangle(hostile[0]), hostile[0])
        XCTAssertEqual(Demangler.demangle(hostile[1]), "<()>::foo")
        for name in hostile.dropFirst(2) {
            XCTAssertEqual(Demangler.demangle(name), name, String(name.prefix(80)))
        }
    }

    func testLongButValidNamesDemangle() {
        let bigConstant = "_RINvC1a1bKj" + String(repeating: "f", count: 3000) + "_E"
        XCTAssertEqual(Demangler.demangle(bigConstant), "a::b::<0x" + String(repeating: "f", count: 3000) + ">")
        let manyComponents = "_ZN" + String(repeating: "1a", count: 2000) + "17h0123456789abcdefE"
        XCTAssertEqual(Demangler.demangle(manyComponents), Array(repeating: "a", count: 2000).joined(separator: "::"))
    }

    /// `_R` and `prefix`, then `levels` nested tuple types whose innermost holds `_` and each holds a back-reference
    /// to the one inside it: `((_, _), (_, _))` for two levels.
    private func doublingTuples(after prefix: String, levels: Int) -> String {
        let firstTuple = prefix.utf8.count  // positions count from after `_R`
        var name = "_R" + prefix + String(repeating: "T", count: levels) + "p"
        for level in 0..<levels {
            // The innermost tuple's back-reference is to `_`, the next one's to the innermost tuple, and so on.
            name += "B" + base62(firstTuple + levels - level) + "_E"
        }
        return name
    }

    /// A back-reference's position as the grammar writes it: `_` for 0, else position - 1 in base 62 and `_`.
    private func base62(_ position: Int) -> String {
        let digits = Array("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        var value = position - 1
        guard value >= 0 else { return "" }
        var text = ""
        repeat {
            text.insert(digits[value % 62], at: text.startIndex)
            value /= 62
        } while value > 0
        return text
    }

    /// The nesting bound keeps the stack small: names at and past it demangle on a thread with a 512 KB stack (a debug
    /// build needs about 1 KB a level, so 128 levels fit in 256 KB; threads get 8 MB by default).
    func testNestingAtTheBoundFitsASmallStack() {
        final class Results: @unchecked Sendable {
            var names: [String] = []
        }
        let results = Results()
        let finished = DispatchSemaphore(value: 0)
        let thread = Thread {
            let depth = RustDemangler.maximumNestingDepth
            // The generic path is one level, each `R` one more.
            results.names.append(Demangler.demangle("_RINvC1a1b" + String(repeating: "R", count: depth - 1) + "uE"))
            results.names.append(Demangler.demangle("_RINvC1a1b" + String(repeating: "R", count: depth) + "uE"))
            results.names.append(Demangler.demangle("_RIC3000" + String(repeating: "R", count: 3000) + "B5_E"))
            results.names.append(Demangler.demangle("_RIC1aB_E"))
            finished.signal()
        }
        thread.stackSize = 512 * 1024
        thread.start()
        finished.wait()
        let depth = RustDemangler.maximumNestingDepth
        XCTAssertEqual(results.names.first, "a::b::<" + String(repeating: "&", count: depth - 1) + "()>")
        XCTAssertEqual(results.names.dropFirst().map { $0.hasPrefix("_R") }, [true, true, true])
    }

    /// rustc-demangle's own example of exponential growth, small enough to print: 2^6 copies of `_`.
    func testBackReferencesThatMultiplyStayWithinTheOutputBound() {
        let small = "_RMC0TTTTTTpB8_EB7_EB6_EB5_EB4_EB3_E"
        XCTAssertEqual(doublingTuples(after: "MC0", levels: 6), small)
        let demangled = Demangler.demangle(small)
        XCTAssertEqual(demangled.filter { $0 == "_" }.count, 64, demangled)
        XCTAssertTrue(demangled.hasPrefix("<((((((_, _), (_, _))"), demangled)
    }

    func testPunycodeThatDoesNotDecodeIsPrintedAsRustcDemangleDoes() {
        assertDemangles([
            // `9` is not a digit of the encoding's alphabet past this point: undecodable.
            "_RNvNtCs1234_7mycrate3foou5ab_99": "mycrate::foo::punycode{ab-99}",
            "_RNvNtCs1234_7mycrate3foou6ab_xyz": "mycrate::foo::⦀ab",
        ])
    }
}
