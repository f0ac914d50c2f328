#!/usr/bin/env cwl-runner
# Imputes one chromosome with Beagle 5.4 against a bref3 reference panel, with the arguments a
# fedimpute node uses for its own Beagle jobs (so results match a local run). A node wrapping a
# GA4GH WES server attaches this workflow to every run (`fedimpute service add --kind wes
# --workflow-url configs/wes/beagle-impute.cwl`); `ref` and `map` point at the panel's files
# where the WES server can read them.
cwlVersion: v1.2
class: CommandLineTool
label: Beagle 5.4 imputation of one chromosome
baseCommand: [java]
arguments:
  - -Xmx$(inputs.java_heap)
  - -jar
  - /usr/share/beagle/beagle.jar
  - impute=true
  - gp=true
inputs:
  gt:
    type: File
    inputBinding: {prefix: "gt=", separate: false}
  ref:
    type: File
    inputBinding: {prefix: "ref=", separate: false}
  map:
    type: File?
    inputBinding: {prefix: "map=", separate: false}
  out:
    type: string
    default: imputed
    inputBinding: {prefix: "out=", separate: false}
  nthreads:
    type: int
    default: 2
    inputBinding: {prefix: "nthreads=", separate: false}
  seed:
    type: int
    default: -99999
    inputBinding: {prefix: "seed=", separate: false}
  java_heap:
    type: string
    default: 2g
outputs:
  imputed:
    type: File
    outputBinding: {glob: $(inputs.out).vcf.gz}
  log:
    type: File
    outputBinding: {glob: $(inputs.out).log}
