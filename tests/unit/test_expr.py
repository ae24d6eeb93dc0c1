"""The safe expression evaluator: what it computes, and everything it must refuse with an ExprError."""

from __future__ import annotations

import math

import pytest

from archc.diagnostics import ExprError, SourceLoc
from archc.spec.expr import FUNCTIONS, compile_expr, divisible, evaluate, is_expr

LOC = SourceLoc("spec.yaml", 4, 17)
ENV = {"dims": [48, 96, 224, 448], "depth": 3, "ratio": 0.5, "name": "stage", "flag": True, "empty": []}


def ev(source: str, env: dict | None = None) -> object:
    return evaluate("${" + source + "}", ENV if env is None else env, LOC)


def fails(source: str, *fragments: str, env: dict | None = None) -> ExprError:
    with pytest.raises(ExprError) as info:
        ev(source, env)
    err = info.value
    assert err.loc == LOC  # located at the string in the YAML
    for fragment in fragments:
        assert fragment in err.message, err.message
    return err


# -- what it computes -----------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "value"), [
    ("1 + 2 * 3", 7),
    ("(1 + 2) * 3", 9),
    ("7 / 2", 3.5),
    ("7 // 2", 3),
    ("-7 // 2", -4),
    ("7 % 3", 1),
    ("2 ** 10", 1024),
    ("2 ** -1", 0.5),
    ("-depth", -3),
    ("+depth", 3),
    ("dims[1] * 2", 192),
    ("depth * ratio", 1.5),
    ("'a' + name", "astage"),
    ("[1, 2] + [3]", [1, 2, 3]),
    ("(1, 2)", [1, 2]),
    ("[0] * 3", [0, 0, 0]),
    ("'ab' * 2", "abab"),
])
def test_arithmetic(source: str, value: object) -> None:
    assert ev(source) == value


@pytest.mark.parametrize(("source", "value"), [
    ("depth > 2", True),
    ("depth >= 4", False),
    ("depth == 3", True),
    ("depth != 3", False),
    ("1 < depth < 5", True),
    ("1 < depth < 2", False),
    ("48 in dims", True),
    ("5 not in dims", True),
    ("'ta' in name", True),
    ("not flag", False),
    ("flag and depth", 3),
    ("empty or 'none'", "none"),
    ("depth > 5 and 1 // 0", False),  # short-circuits: the right side is never evaluated
    ("depth < 5 or 1 // 0", True),
])
def test_comparisons_and_logic(source: str, value: object) -> None:
    assert ev(source) == value


def test_conditional_expression() -> None:
    assert ev("'big' if depth > 2 else 'small'") == "big"
    assert ev("'big' if depth > 5 else 'small'") == "small"
    assert ev("1 if flag else 1 // 0") == 1  # only the chosen branch is evaluated


@pytest.mark.parametrize(("source", "value"), [
    ("dims[0]", 48),
    ("dims[-1]", 448),
    ("dims[1:3]", [96, 224]),
    ("dims[:depth]", [48, 96, 224]),
    ("dims[::2]", [48, 224]),
    ("dims[::-1]", [448, 224, 96, 48]),
    ("name[0]", "s"),
    ("name[1:3]", "ta"),
    ("[[1, 2], [3, 4]][1][0]", 3),
])
def test_indexing_and_slicing(source: str, value: object) -> None:
    assert ev(source) == value


@pytest.mark.parametrize(("source", "value"), [
    ("min(dims)", 48),
    ("min(3, 1, 2)", 1),
    ("max(16, dims[1] // 8)", 16),
    ("abs(-4)", 4),
    ("int(7.9)", 7),
    ("float(3)", 3.0),
    ("round(2.567, 2)", 2.57),
    ("len(dims)", 4),
    ("sum(dims[:2])", 144),
    ("sum([0.5, 0.25], 1)", 1.75),
    ("ceil(224 / 4 / 2 / 8)", 4),
    ("floor(2.7)", 2),
    ("sqrt(16)", 4.0),
    ("divisible(37)", 40),
    ("divisible(37, 16)", 48),  # 32 would lose more than 10% of 37
    ("divisible(v=100, d=8, min_value=8)", 104),
])
def test_whitelisted_functions(source: str, value: object) -> None:
    assert ev(source) == value


def test_function_whitelist_is_exactly_the_documented_one() -> None:
    assert set(FUNCTIONS) == {"min", "max", "abs", "int", "float", "round", "len", "sum", "ceil", "floor", "sqrt",
                              "divisible"}


def test_divisible_follows_timms_rule() -> None:
    assert divisible(3.2, 8) == 8
    assert divisible(100, 8) == 104
    assert divisible(37, 16) == 48  # rounding down to 32 would lose more than 10%
    assert divisible(33, 32) == 32
    assert divisible(4, 8, min_value=16) == 16


def test_whole_expression_keeps_its_type() -> None:
    assert evaluate("${depth}", ENV) == 3
    assert evaluate("${dims}", ENV) == [48, 96, 224, 448]
    assert evaluate("${flag}", ENV) is True
    assert evaluate("${None}", ENV) is None


def test_string_interpolation() -> None:
    assert evaluate("stage${depth}", ENV) == "stage3"
    assert evaluate("${name}_${depth + 1}", ENV) == "stage_4"
    assert evaluate("${depth} and ${depth * 2}", ENV) == "3 and 6"
    assert evaluate("no expression here", ENV) == "no expression here"


def test_containers_are_evaluated_recursively() -> None:
    assert evaluate(["${depth}", {"k": "${dims[0]}"}, 5], ENV) == [3, {"k": 48}, 5]


def test_non_strings_pass_through() -> None:
    assert evaluate(3, ENV) == 3
    assert evaluate(None, ENV) is None


def test_is_expr() -> None:
    assert is_expr("${x}") and is_expr("a${x}b")
    assert not is_expr("x") and not is_expr(3)


def test_names_of_an_expression_exclude_functions() -> None:
    assert compile_expr("max(dims[i], n) + depth").names == {"dims", "i", "n", "depth"}


# -- bounds ---------------------------------------------------------------------------------------

def test_exponent_is_bounded() -> None:
    assert ev("2 ** 64") == 2**64
    fails("2 ** 65", "exponent 65 exceeds 64")
    fails("2 ** 2 ** 10", "exponent 1024 exceeds 64")


def test_integer_size_is_bounded() -> None:
    fails("(10 ** 20) * (10 ** 20)", "integer result too large")
    fails("(2 ** 64) ** 2", "integer result too large")


def test_sequence_sizes_are_bounded() -> None:
    assert len(ev("[0] * 100000")) == 100_000
    fails("[0] * 100001", "result longer than 100000")
    fails("'ab' * 60000", "result longer than 100000")
    fails("[0] * 60000 + [0] * 60000", "result longer than 100000")


def test_sum_adds_numbers_only() -> None:
    # sum with a list start would concatenate lists quadratically
    fails("sum([[0] * 10] * 3, [])", "sum(...) failed", "adds numbers")
    fails("sum(['a', 'b'])", "adds numbers")


def test_string_formatting_is_rejected() -> None:
    fails("'%0999999999d' % 1", "'%' formatting of strings is not allowed")


def test_expression_length_and_nesting_are_bounded() -> None:
    fails("+".join(["1"] * 1001), "longer than 2000 characters")
    fails("-" * 500 + "1", "nests more than 100 levels deep")
    fails("[" * 150 + "]" * 150)  # the parser's own limit or ours, never a crash


# -- failures while evaluating ---------------------------------------------------------------------

@pytest.mark.parametrize(("source", "fragment"), [
    ("depth // 0", "division by zero"),
    ("depth % 0", "division by zero"),
    ("1 / 0.0", "division by zero"),
    ("divisible(10, 0)", "division by zero"),
    ("dims[9]", "index 9 out of range"),
    ("depth[0]", "cannot index 3 with 0"),
    ("dims[::0]", "bad slice"),
    ("1 < 'a'", "cannot compare 1 and 'a'"),
    ("1 + 'a'", "cannot apply operator"),
    ("-name", "bad operand 'stage'"),
    ("sqrt(-1)", "sqrt(...) failed"),
    ("len(3)", "len(...) failed"),
    ("int('x')", "int(...) failed"),
    ("ceil(float('nan'))", "ceil(...) failed"),
    ("1.0e308 * 10 ** 10 ** 1", None),
])
def test_runtime_errors_are_expr_errors(source: str, fragment: str | None) -> None:
    if fragment is None:  # overflow to inf is a float, not an error
        assert math.isinf(ev(source))
        return
    err = fails(source, fragment)
    assert err.message.startswith("in '${" + source + "}': ")


def test_unknown_name_suggests_a_param() -> None:
    err = fails("dim[0]", "unknown name 'dim'")
    assert err.hint == "did you mean 'dims'?"
    err = fails("zzz", "unknown name 'zzz'")
    assert err.hint == "declare it under params"


def test_unterminated_interpolation() -> None:
    with pytest.raises(ExprError, match=r"unterminated '\$\{'"):
        evaluate("stage${depth", ENV, LOC)
    with pytest.raises(ExprError, match=r"unterminated '\$\{'"):
        evaluate("${depth}${", ENV, LOC)


def test_syntax_error() -> None:
    err = fails("1 +", "invalid expression '1 +'")
    assert err.loc == LOC
    fails("", "invalid expression")


# -- what it refuses -------------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["().__class__", "name.__len__", "(1).real", "dims[0].__class__.__mro__"])
def test_attribute_access_is_rejected(source: str) -> None:
    err = fails(source, "attribute access", "is not allowed in expressions")
    assert "whitelisted functions" in err.hint


@pytest.mark.parametrize(("source", "shown"), [
    ("name.upper()", "name.upper"),
    ("dims.append(1)", "dims.append"),
    ("[].__class__.__base__.__subclasses__()", "[].__class__.__base__.__subclasses__"),
])
def test_method_calls_are_rejected(source: str, shown: str) -> None:
    fails(source, f"call to '{shown}' is not allowed in expressions")


@pytest.mark.parametrize(("source", "shown"), [
    ("open('x')", "open"),
    ("__import__('os')", "__import__"),
    ("eval('1')", "eval"),
    ("exec('x = 1')", "exec"),
    ("getattr(dims, 'pop')", "getattr"),
    ("print(1)", "print"),
    ("dims[0](1)", "dims[0]"),
    ("(lambda: 1)()", "lambda: 1"),
])
def test_calls_outside_the_whitelist_are_rejected(source: str, shown: str) -> None:
    err = fails(source, f"call to '{shown}' is not allowed in expressions")
    assert err.hint


def test_near_miss_function_name_gets_a_suggestion() -> None:
    err = fails("maxx(1, 2)", "call to 'maxx' is not allowed")
    assert err.hint == "did you mean 'max'?"


def test_keyword_arguments_only_for_divisible() -> None:
    fails("round(2.5, ndigits=1)", "call to 'round' is not allowed")
    fails("divisible(10, **{'d': 4})")
    fails("min(*dims)", "'Starred' is not allowed")


@pytest.mark.parametrize(("source", "node"), [
    ("lambda: 1", "Lambda"),
    ("[x for x in dims]", "ListComp"),
    ("{x for x in dims}", "SetComp"),
    ("{x: 1 for x in dims}", "DictComp"),
    ("sum(x for x in dims)", "GeneratorExp"),
    ("{'a': 1}", "Dict"),
    ("{1, 2}", "Set"),
    ("f'{depth}'", "JoinedStr"),
    ("(y := 1)", "NamedExpr"),
])
def test_other_constructs_are_rejected(source: str, node: str) -> None:
    err = fails(source, f"'{node}' is not allowed in expressions")
    assert err.hint


@pytest.mark.parametrize("source", ["__builtins__", "__class__", "__name__", "dims[__x__]"])
def test_dunder_names_are_rejected(source: str) -> None:
    fails(source, "is not allowed in expressions")


@pytest.mark.parametrize(("source", "op"), [
    ("1 is 1", "is"), ("1 is not 2", "is not"), ("~1", "~"), ("1 << 70", "<<"), ("1 >> 1", ">>"),
    ("1 | 2", "|"), ("1 & 2", "&"), ("1 ^ 2", "^"), ("dims @ dims", "@"),
])
def test_operators_outside_the_whitelist_are_rejected(source: str, op: str) -> None:
    fails(source, f"operator '{op}' is not allowed in expressions")


def test_bytes_literal_is_rejected() -> None:
    fails("b'x'", "literal b'x' is not allowed")


def test_rejection_happens_before_evaluation() -> None:
    """Whitelisting is a static check of the whole tree, even of branches that would not run."""
    with pytest.raises(ExprError, match="call to 'open'"):
        compile_expr("1 if True else open('x')", LOC)
