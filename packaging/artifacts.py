#!/usr/bin/env python3
"""The two release artifacts Scripts/package writes in Python: the man page and the wheel. Standard library only.

  artifacts.py man BINARY OUT.1 DATE            pybpfprof(1) from BINARY --experimental-dump-help (ArgumentParser's
                                                 description of every command and option), in man(7) macros
  artifacts.py wheel BINARY VERSION TAG README OUT_DIR
                                                 OUT_DIR/pybpfprof-VERSION-TAG.whl: BINARY as the `pybpfprof` command
                                                 (py-spy's layout: the executable in the wheel's scripts directory,
                                                 which pip installs into the environment's bin/)

SOURCE_DATE_EPOCH, when set, dates the wheel's entries, so that one commit gives the same bytes.
"""
import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile


def roff(text):
    """Text for a man page line: backslashes and leading dots or quotes escaped."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line for line in text.split("\n"))


def option_synopsis(argument):
    names = [("-" if n["kind"] == "short" else "--") + n["name"] for n in argument.get("names", [])]
    if argument["kind"] == "positional":
        return "\\fI" + roff(argument.get("valueName", "value")) + "\\fR" + ("..." if argument.get("isRepeating") else "")
    label = ", ".join("\\fB" + roff(n) + "\\fR" for n in names)
    if argument["kind"] == "option":
        label += " \\fI" + roff(argument.get("valueName", "value")) + "\\fR"
    return label


def command_section(command, path):
    lines = []
    arguments = [a for a in command.get("arguments", []) if a.get("shouldDisplay", True)]
    if command.get("abstract"):
        lines.append(roff(command["abstract"]))
    if command.get("discussion"):
        lines += [".PP", ".nf", roff(command["discussion"]), ".fi"]
    for argument in arguments:
        lines += [".TP", option_synopsis(argument)]
        text = argument.get("abstract", "")
        if argument.get("discussion"):
            text += " " + argument["discussion"]
        if argument.get("defaultValue") not in (None, ""):
            text += " (default: " + argument["defaultValue"] + ")"
        lines.append(roff(text) if text else "")
    return lines


def man(binary, out, date):
    dump = json.loads(subprocess.run([binary, "--experimental-dump-help"], check=True, capture_output=True).stdout)
    root = dump["command"]
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split("\n")[0].split()[1]
    lines = [
        '.TH PYBPFPROF 1 "%s" "pybpfprof %s" "User Commands"' % (date, version),
        ".SH NAME", "pybpfprof \\- " + roff(root.get("abstract", "")),
        ".SH SYNOPSIS",
    ]
    subcommands = [c for c in root.get("subcommands", []) if c.get("shouldDisplay", True) and c["commandName"] != "help"]
    for command in subcommands:
        lines += [".B pybpfprof " + command["commandName"], ".RI [ options ]", ".br"]
    lines += [
        ".SH DESCRIPTION",
        roff("record is the default subcommand: `pybpfprof --all` is `pybpfprof record --all`. "
             "Sampling needs root (BPF programs and other processes' memory). "
             "`pybpfprof --version` prints the version, the commit and, as root, how the running kernel runs the BPF program."),
    ]
    for command in subcommands:
        lines += [".SH " + roff(command["commandName"].upper())] + command_section(command, ["pybpfprof", command["commandName"]])
    lines += [
        ".SH FILES",
        ".TP", "\\fI/etc/default/pybpfprof\\fR",
        roff("Settings of pybpfprof.service, the host-wide recording the Debian package installs, disabled until "
             "PYBPFPROF_ENABLED=yes there and `systemctl enable --now pybpfprof`."),
        ".TP", "\\fI/var/lib/pybpfprof\\fR",
        roff("Where the service writes its rotated recordings; render one with `pybpfprof report FILE -o profile.html`."),
        ".SH SEE ALSO", "\\fBpy\\-spy\\fR(1), \\fBperf\\fR(1)",
    ]
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


def record_digest(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel(binary, version, tag, readme, out_dir):
    name = "pybpfprof"
    dist_info = "%s-%s.dist-info" % (name, version)
    data = "%s-%s.data" % (name, version)
    with open(binary, "rb") as f:
        executable = f.read()
    with open(readme, encoding="utf-8") as f:
        description = f.read()
    metadata = "\n".join([
        "Metadata-Version: 2.1",
        "Name: " + name,
        "Version: " + version,
        "Summary: A sampling profiler for CPython that reads Python stacks in the kernel with BPF, never pausing the target",
        "Platform: Linux",
        "Classifier: Operating System :: POSIX :: Linux",
        "Classifier: Topic :: Software Development :: Debuggers",
        "Classifier: Programming Language :: Python :: 3",
        "Description-Content-Type: text/markdown",
        "", description,
    ])
    wheel_file = "\n".join([
        "Wheel-Version: 1.0",
        "Generator: pybpfprof packaging/artifacts.py",
        "Root-Is-Purelib: false",
        "Tag: " + tag,
        "",
    ])
    entries = [
        ("%s/scripts/%s" % (data, name), executable, 0o755),
        ("%s/METADATA" % dist_info, metadata.encode(), 0o644),
        ("%s/WHEEL" % dist_info, wheel_file.encode(), 0o644),
    ]
    # RECORD comes last, listing every other entry with its hash (pip checks them) and itself without one.
    rows = ["%s,%s,%d" % (path, record_digest(content), len(content)) for path, content, _ in entries]
    rows.append("%s/RECORD,," % dist_info)
    entries.append(("%s/RECORD" % dist_info, ("\n".join(rows) + "\n").encode(), 0o644))
    epoch = max(int(os.environ.get("SOURCE_DATE_EPOCH", time.time())), 315532800)
    date_time = time.gmtime(epoch)[:6]
    path = os.path.join(out_dir, "%s-%s-%s.whl" % (name, version, tag))
    temporary = path + ".tmp"
    with zipfile.ZipFile(temporary, "w") as archive:
        for entry, content, mode in entries:
            info = zipfile.ZipInfo(entry, date_time)
            # pip marks a file executable only when the entry's Unix mode says so.
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content, compresslevel=9)
    os.replace(temporary, path)
    print(path)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "man":
        man(*sys.argv[2:])
    elif len(sys.argv) == 7 and sys.argv[1] == "wheel":
        wheel(*sys.argv[2:])
    else:
        sys.exit(__doc__)
