"""Experiment options as one frozen dataclass per experiment: its field defaults are the only
statement of each default. `add_options` builds the argparse options from the fields (flag
--name-with-dashes, type, choices, help), and `read_options` reads a config back into the
dataclass, so `config.get(key, fallback)` with a second default has nowhere to live."""

import dataclasses


def option(default, help, *, type=None, choices=None):
    """A dataclass field that is also a command-line option (bool fields are store_true flags)."""
    return dataclasses.field(
        default=default, metadata={"help": help, "type": type, "choices": choices}
    )


def add_options(parser, options_class):
    """Add one argparse option per field of `options_class`, its default the field's."""
    for field in dataclasses.fields(options_class):
        flag, meta = "--" + field.name.replace("_", "-"), field.metadata
        if field.type in (bool, "bool"):
            parser.add_argument(flag, action="store_true", help=meta["help"])
            continue
        parser.add_argument(
            flag,
            type=meta["type"],
            choices=meta["choices"],
            default=field.default,
            help=meta["help"],
        )


def read_options(options_class, config):
    """options_class from a flat config dict: its fields' keys; None (not given) and missing
    keys take the field's default."""
    names = {field.name for field in dataclasses.fields(options_class)}
    return options_class(
        **{key: value for key, value in config.items() if key in names and value is not None}
    )
