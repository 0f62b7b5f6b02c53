"""Install vtpack_mm: Dynamic Grained Encoder backbones for the OpenMMLab stack."""
import glob
import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_requirements(name):
    """Requirement lines of requirements/<name>.txt, comments dropped."""
    with open(os.path.join(HERE, 'requirements', name + '.txt')) as f:
        lines = (line.split('#', 1)[0].strip() for line in f)
        return [line for line in lines if line]


def read_version():
    with open(os.path.join(HERE, 'vtpack_mm', 'version.py')) as f:
        return re.search(r"__version__ = '([^']+)'", f.read()).group(1)


def ext_modules():
    """The compiled ops (ops/csrc): the CPU kernels always, one module vtpack_mm._ext.

    VTPACK_MM_NO_EXT=1 skips them (the package then runs its PyTorch references).
    """
    if os.environ.get('VTPACK_MM_NO_EXT') == '1':
        return [], {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        raise SystemExit('vtpack_mm compiles its ops against the installed torch: install '
                         'torch first, then `pip install --no-build-isolation --use-pep517 -e .` '
                         '(or set VTPACK_MM_NO_EXT=1 to skip the compiled ops)')
    csrc = os.path.join('ops', 'csrc')
    sources = sorted(glob.glob(os.path.join(csrc, 'pytorch', '*.cpp')) +
                     glob.glob(os.path.join(csrc, 'pytorch', 'cpu', '*.cpp')))
    ext = CppExtension('vtpack_mm._ext', sources, include_dirs=[os.path.abspath(csrc)],
                       # at::parallel_for is OpenMP inline code: without -fopenmp the
                       # kernels would run on one thread
                       extra_compile_args=['-O3', '-fopenmp'], extra_link_args=['-fopenmp'])
    return [ext], dict(build_ext=BuildExtension.with_options(use_ninja=True))


EXT_MODULES, CMDCLASS = ext_modules()

setup(
    name='vtpack_mm',
    version=read_version(),
    description='Dynamic Grained Encoder (NeurIPS 2021) backbones for mmdet, '
    'mmsegmentation and mmpretrain',
    long_description=open(os.path.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    install_requires=read_requirements('runtime') + read_requirements('mminstall'),
    extras_require=dict(
        tests=read_requirements('tests'),
        optional=read_requirements('optional'),
    ),
    ext_modules=EXT_MODULES,
    cmdclass=CMDCLASS,
    zip_safe=False,
)
