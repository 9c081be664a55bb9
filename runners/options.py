"""Experiment options as one frozen dataclass per experiment: its field defaults are the only
statement of each default. `add_options` builds the argparse options from the fields (flag
--name-with-dashes, type, choices, help), and `read_options` reads a config back into the
dataclass, so `config.get(key, fallback)` with a second default has nowhere to live.
`OptionsExperiment` wires both into the experiment protocol."""

import dataclasses

from npflows.train import Experiment


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


class OptionsExperiment(Experiment):
    """An Experiment whose options are the frozen dataclass `Options`: argparse is built from it,
    and `self.options` holds the config read back into it (self.config gets every option's
    value, so the loop and checkpoints see the defaults that were used)."""

    Options = None  # a dataclass of option(...) fields, set by each subclass

    @classmethod
    def add_arguments(cls, parser):
        add_options(parser, cls.Options)

    def __init__(self, config):
        self.options = read_options(self.Options, config)
        super().__init__({**config, **dataclasses.asdict(self.options)})
