/* Random one-byte reads over an array, each after WORK steps of work,
 * optionally prefetched AHEAD reads ahead (BENCHMARKS.md, sessions 14, 27).
 *   cc -O2 random_reads.c -o random_reads
 *   taskset -c 0 ./random_reads MB HUGE AHEAD WORK STRIDE [WIDE]
 * e.g. `64 0 8 100 704`: 64 MB, 4 KiB pages, prefetch 8 ahead, 100
 * multiplications, one read per 704 bytes (a replay slot's size). WIDE=1
 * makes each step four independent additions instead of one dependent
 * multiplication: work that retires fast, as replay's does, so that a
 * stall at the prefetch is not hidden behind a long dependency chain. */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>
#include <xmmintrin.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  size_t mb=atoi(argv[1]); int huge=atoi(argv[2]); int pf=atoi(argv[3]); int work=atoi(argv[4]); int stride=atoi(argv[5]);
  int wide=argc>6?atoi(argv[6]):0;
  size_t sz=mb<<20; size_t n=1<<22;
  char*p=mmap(0,sz+(2<<20),PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);
  p=(char*)(((uintptr_t)p+(2<<20)-1)&~((uintptr_t)(2<<20)-1));
  if(huge) madvise(p,sz,MADV_HUGEPAGE);
  for(size_t i=0;i<sz;i+=4096)p[i]=1;
  uint32_t*idx=malloc(n*4); uint64_t x=88172645463325252ULL;
  size_t slots=sz/stride;
  for(size_t i=0;i<n;i++){x^=x<<13;x^=x>>7;x^=x<<17;idx[i]=x%slots;}
  volatile uint64_t sink=0; uint64_t acc=1,a1=1,a2=2,a3=3,a4=4;
  double t0=now();
  for(size_t i=0;i<n-16;i++){
    if(pf) _mm_prefetch(p+(size_t)idx[i+pf]*stride,_MM_HINT_T0);
    if(wide){for(int k=0;k<work;k++){a1+=k^a2;a2+=a3>>1;a3^=a4+k;a4+=a1;} acc+=a1^a2^a3^a4;}
    else for(int k=0;k<work;k++) acc=acc*6364136223846793005ULL+1442695040888963407ULL;
    acc+=p[(size_t)idx[i]*stride];
  }
  double t1=now(); sink=acc;
  printf("mb=%zu huge=%d pf=%d work=%d wide=%d: %.1f ns/access\n",mb,huge,pf,work,wide,(t1-t0)/n*1e9);
  return (int)(sink & 0);}
