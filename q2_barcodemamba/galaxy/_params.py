"""Galaxy <param>s (and the Cheetah command lines that pass them to q2cli)
from QIIME 2 signature specs: semantic-type inputs, primitives with their
Range/Choices, unions, collections and metadata."""
import xml.etree.ElementTree as ET

from qiime2.core.type.util import (is_collection_type,
                                   is_metadata_column_type, is_metadata_type,
                                   is_union)


def _opt(prefix: str, name: str) -> str:
    """q2cli option name, e.g. ('p', 'batch_size') -> '--p-batch-size'."""
    return f"--{prefix}-{name.replace('_', '-')}"


def _num(value) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def _desc(spec) -> str:
    return spec.description if isinstance(spec.description, str) else ""


def _predicate(texp) -> dict:
    return texp.predicate.to_ast() if texp.predicate is not None else {}


def _member_param(name, texp, default, attrs):
    """<param> for one non-union primitive type; ``default`` None = none."""
    pred = _predicate(texp)
    if pred.get("name") == "Choices" or texp.name == "Bool":
        el = ET.Element("param", name=name, type="select", **attrs)
        choices = pred.get("choices", [True, False])
        for choice in choices:
            value = str(choice).lower() if texp.name == "Bool" else \
                str(choice)
            opt = ET.SubElement(el, "option", value=value)
            opt.text = value
            if default is not None and choice == default:
                opt.set("selected", "true")
        return el
    if texp.name not in ("Int", "Float") or is_collection_type(texp):
        # Str, and lists/sets of primitives as space-separated text.
        el = ET.Element("param", name=name, type="text", **attrs)
        if is_collection_type(texp) and default is not None:
            el.set("value", " ".join(map(str, default)))
        else:
            el.set("value", "" if default is None else str(default))
        return el
    is_int = texp.name == "Int"
    el = ET.Element("param", name=name, type="integer" if is_int else "float",
                    **attrs)
    start = end = None
    inc_start = inc_end = True
    if pred.get("name") == "Range":
        (start, end), (inc_start, inc_end) = pred["range"], pred["inclusive"]
        if is_int:  # Galaxy's min/max are inclusive
            start = None if start is None else start + (not inc_start)
            end = None if end is None else end - (not inc_end)
        if start is not None:
            el.set("min", _num(start))
        if end is not None:
            el.set("max", _num(end))
        exclusive = (start is not None and not inc_start) or \
            (end is not None and not inc_end)
        if exclusive and not is_int:
            val = ET.SubElement(el, "validator", type="in_range",
                                message=f"Must be in {texp}")
            for bound, inc, key in ((start, inc_start, "min"),
                                    (end, inc_end, "max")):
                if bound is not None:
                    val.set(key, _num(bound))
                    val.set(f"exclude_{key}", str(not inc).lower())
    if default is None and attrs.get("optional") != "true":
        default = _inside(start, end, is_int or inc_start, is_int or inc_end)
    el.set("value", "" if default is None else _num(default))
    return el


def _inside(start, end, inc_start, inc_end):
    """A value in the range, for a number Galaxy needs but QIIME 2 has no
    default for."""
    if start is not None and inc_start:
        return start
    if start is None and end is not None and inc_end:
        return end
    if start is not None and end is not None:
        return (start + end) / 2
    if start is not None:
        return start + 1
    return 0 if end is None else end - 1


def _union_param(name, texp, default, optional, attrs, opt):
    """Union (e.g. Float % Range | Str % Choices): a conditional whose
    selector lists every choice plus one "provide a value" entry per other
    member type."""
    whens = [("__none__", "Do not set", None)] if optional else []
    for member in texp:
        pred = _predicate(member)
        if pred.get("name") == "Choices":
            whens += [(str(c), str(c), None) for c in pred["choices"]]
    for member in texp:
        if _predicate(member).get("name") == "Choices":
            continue
        fits = default is not None and not isinstance(default, str)
        whens.append((f"__{member.name.lower()}__", f"Provide a value "
                      f"({member})", _member_param(
                          "value", member, default if fits else None,
                          {"label": f"{name}: {member}"})))
    if default is None:
        selected = whens[0][0]
    else:
        selected = next((v for v, _, p in whens if p is None and
                         v == str(default)), None) or \
            next(v for v, _, p in whens if p is not None)
    cond = ET.Element("conditional", name=name)
    sel = ET.SubElement(cond, "param", name="type", type="select", **attrs)
    lines = []
    for value, text, param in whens:
        option = ET.SubElement(sel, "option", value=value)
        option.text = text
        if value == selected:
            option.set("selected", "true")
        when = ET.SubElement(cond, "when", value=value)
        if param is not None:
            when.append(param)
            lines += [f"#{'elif' if lines else 'if'} "
                      f"str(${name}.type) == '{value}':",
                      f"{opt} '${name}.value'"]
    lines += [f"#{'elif' if lines else 'if'} "
              f"str(${name}.type) != '__none__':",
              f"{opt} '${name}.type'", "#end if"]
    return cond, lines


def _param(name, spec):
    """(<param> or <conditional>, Cheetah command lines) of a parameter."""
    texp, has_default = spec.qiime_type, spec.has_default()
    default = spec.default if has_default else None
    optional = has_default and default is None
    attrs = {"label": f"{name}: {texp}",
             "help": ("[optional] " if has_default else "[required] ")
             + _desc(spec)}
    opt = _opt("p", name)
    if is_metadata_type(texp):
        return _metadata_param(name, texp, optional, attrs)
    if is_union(texp):
        return _union_param(name, texp, default, optional, attrs, opt)
    if texp.name == "Bool" and not optional:
        return ET.Element("param", name=name, type="boolean", truevalue=opt,
                          falsevalue=_opt("p", "no_" + name),
                          checked=str(bool(default)).lower(),
                          **attrs), [f"${name}"]
    if optional:
        attrs["optional"] = "true"
    el = _member_param(name, texp, default, attrs)
    if texp.name == "Bool":
        return el, [f"#if str(${name}) == 'true':", opt,
                    f"#elif str(${name}) == 'false':",
                    _opt("p", "no_" + name), "#end if"]
    if is_collection_type(texp):
        lines = [f"#for $v in str(${name}).split():", f"{opt} '$v'",
                 "#end for"]
    else:
        lines = [f"{opt} '${name}'"]
    return el, ([f"#if str(${name}).strip() not in ('', 'None'):", *lines,
                 "#end if"] if optional or is_collection_type(texp)
                else lines)


def _metadata_param(name, texp, optional, attrs):
    """Metadata: tabular or qza files (q2cli merges several);
    MetadataColumn: one file plus the column name."""
    if optional:
        attrs["optional"] = "true"
    el = ET.Element("param", name=name, type="data", format="tabular,qza",
                    **attrs)
    file_opt = _opt("m", name) + "-file"
    if not is_metadata_column_type(texp):
        el.set("multiple", "true")
        lines = [f"#for $f in ${name}:", f"{file_opt} '$f'", "#end for"]
        return el, ([f"#if ${name}:", *lines, "#end if"] if optional
                    else lines)
    column = ET.Element("param", name=f"{name}_column", type="text",
                        value="", label=f"{name}: column name",
                        help=f"Column of {name} to use.")
    lines = [f"{file_opt} '${name}'",
             f"{_opt('m', name)}-column '${name}_column'"]
    if optional:
        column.set("optional", "true")
        lines = [f"#if ${name}:", *lines, "#end if"]
    return [el, column], lines


def _input(name, spec):
    """A qza <param> filtered to the input's semantic type(s)."""
    texp = spec.qiime_type
    # a collection input (List[X]) takes datasets of type X
    types = [str(t) for t in (texp.fields[0] if is_collection_type(texp)
                              else texp)]
    el = ET.Element("param", name=name, type="data", format="qza",
                    label=f"{name}: {spec.qiime_type}",
                    help=("[optional] " if spec.has_default() else
                          "[required] ") + _desc(spec))
    if spec.has_default():
        el.set("optional", "true")
    if is_collection_type(spec.qiime_type):
        el.set("multiple", "true")
    validator = ET.SubElement(el, "validator", type="expression",
                              message="Incompatible type")
    validator.text = ('hasattr(value.metadata, "semantic_type") and '
                      f'value.metadata.semantic_type in {types!r}')
    opt = _opt("i", name)
    if is_collection_type(spec.qiime_type):
        lines = [f"#for $f in ${name}:", f"{opt} '$f'", "#end for"]
    else:
        lines = [f"{opt} '${name}'"]
    if spec.has_default():
        lines = [f"#if ${name}:", *lines, "#end if"]
    return el, lines
