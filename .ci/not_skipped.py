"""Fail when a test CI must run was skipped or did not run: python3 not_skipped.py JUNIT_XML ID...

Each ID is a test file (tests/test_x.py) or one test (tests/test_x.py::test_name); every test
it names in pytest's --junitxml report must have run, and at least one must be there.
"""

import sys
import xml.etree.ElementTree as ET


def matches(case: ET.Element, wanted: str) -> bool:
    path, _, name = wanted.partition("::")
    module = path.removesuffix(".py").replace("/", ".")
    return case.get("classname") == module and (not name or case.get("name").split("[")[0] == name)


def main(report: str, *wanted: str) -> int:
    cases = list(ET.parse(report).iter("testcase"))
    problems = []
    for test in wanted:
        found = [c for c in cases if matches(c, test)]
        if not found:
            problems.append(f"{test}: did not run")
        problems += [f"{c.get('classname')}::{c.get('name')} skipped: "
                     f"{c.find('skipped').get('message')}" for c in found
                     if c.find("skipped") is not None]
    for problem in problems:
        print(f"CI must run this test: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
